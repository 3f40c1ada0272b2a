#ifndef HEREPROXY_TOKENS_H
#define HEREPROXY_TOKENS_H

#include <stddef.h>

/*
 * Client tokens (HEREPROXY_CLIENT_TOKENS): the "token:indice,..." list,
 * parsed once into a hash table keyed with SipHash-2-4 under the process
 * key (siphash.h, from getrandom), so that a lookup costs one hash and
 * one comparison however many tokens there are, and no
 * client can choose tokens that collide. The candidate the hash finds is
 * still compared byte for byte in constant time. Immutable once built:
 * any number of threads may call token_table_find at once.
 */

struct token_table;

/* Longest token and indice an entry may hold. */
#define TOKEN_MAX 128
#define TOKEN_INDICE_MAX 64

/*
 * Parse list: entries separated by commas, blanks around them ignored,
 * empty ones skipped; each TOKEN:INDICE, a token of 1 to TOKEN_MAX
 * printable ASCII bytes other than ':' and ',', an indice of 1 to
 * TOKEN_INDICE_MAX of A-Z a-z 0-9 _ . -. A token given twice is an error.
 * Returns 0 and sets *out (NULL for a list without entries; free with
 * token_table_free), or -1 with a message in err that names the entry by
 * its number, never its text (tokens are secret), and *out untouched.
 */
int token_table_parse(
    const char *list, struct token_table **out, char *err, size_t errlen);

/*
 * Copy the indice of token into indice (size bytes, cut to fit) and return
 * 1, or return 0 when token is unknown (or t, token is NULL, or size 0).
 */
int token_table_find(
    const struct token_table *t, const char *token, char *indice, size_t size);

/* How many tokens t holds (0 for NULL). */
size_t token_table_count(const struct token_table *t);

/* Wipe the tokens and free t; NULL does nothing. */
void token_table_free(struct token_table *t);

#endif
