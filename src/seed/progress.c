#include "config.h"

#include <stdio.h>
#include <string.h>

#include "seed/progress.h"

#define BAR_MIN 10
#define BAR_MAX 40

static double
rate_of(const struct seed_progress *p)
{
    return p->elapsed_s > 0 ? (double)p->done / p->elapsed_s : 0.0;
}

/* Seconds left at the rate so far, or -1 when it cannot be told. */
static double
eta_of(const struct seed_progress *p)
{
    double rate = rate_of(p);

    if (p->total == 0 || rate <= 0 || p->done > p->total)
        return -1;
    return (double)(p->total - p->done) / rate;
}

static int
percent_of(const struct seed_progress *p)
{
    if (p->total == 0)
        return 0;
    if (p->done >= p->total)
        return 100;
    return (int)(p->done * 100 / p->total);
}

/* h:mm:ss or m:ss; "-:--" when unknown. */
static void
clock_text(char *buf, size_t size, double s)
{
    unsigned long t;

    if (s < 0 || s > 99.0 * 3600) {
        snprintf(buf, size, "-:--");
        return;
    }
    t = (unsigned long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, size, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, size, "%lu:%02lu", t / 60, t % 60);
}

void
seed_progress_bar(
    char *buf, size_t size, const struct seed_progress *p, int width)
{
    char text[256], eta[32], failed[32];
    size_t tlen, cols, fill, i, len = 0;

    if (size == 0)
        return;
    clock_text(eta, sizeof(eta), eta_of(p));
    /* "failed 0" is left out: the bar must fit 80 columns. */
    if (p->failed > 0)
        snprintf(failed, sizeof(failed), " failed %llu",
            (unsigned long long)p->failed);
    else
        failed[0] = '\0';
    if (p->total > 0)
        snprintf(text, sizeof(text),
            "%3d%% %llu/%llu %.1f tiles/s ETA %s fetched %llu cached %llu%s",
            percent_of(p), (unsigned long long)p->done,
            (unsigned long long)p->total, rate_of(p), eta,
            (unsigned long long)p->fetched, (unsigned long long)p->cached,
            failed);
    else
        snprintf(text, sizeof(text),
            "%llu tiles %.1f tiles/s fetched %llu cached %llu%s",
            (unsigned long long)p->done, rate_of(p),
            (unsigned long long)p->fetched, (unsigned long long)p->cached,
            failed);
    tlen = strlen(text);
    cols = width > 1 ? (size_t)width - 1 : 0;
    buf[0] = '\0';
    if (p->total > 0 && cols >= tlen + 3 + BAR_MIN) {
        size_t bar = cols - tlen - 3;

        if (bar > BAR_MAX)
            bar = BAR_MAX;
        fill = p->done >= p->total
            ? bar
            : (size_t)((double)bar * (double)p->done / (double)p->total);
        if (bar + 3 < size) {
            buf[len++] = '[';
            for (i = 0; i < bar; i++)
                buf[len++] = i < fill ? '#' : ' ';
            buf[len++] = ']';
            buf[len++] = ' ';
            buf[len] = '\0';
        }
    }
    snprintf(buf + len, size - len, "%s", text);
    /* Never wider than the terminal: a wrapped line is not redrawn. */
    if (cols > 0 && strlen(buf) > cols)
        buf[cols] = '\0';
}

void
seed_progress_line(char *buf, size_t size, const struct seed_progress *p)
{
    char eta[32];
    double left = eta_of(p);

    if (p->total > 0) {
        if (left >= 0)
            snprintf(eta, sizeof(eta), "%.0f s", left);
        else
            snprintf(eta, sizeof(eta), "unknown");
        snprintf(buf, size,
            "%llu/%llu tiles (%d%%), %.1f tiles/s, ETA %s, fetched %llu, "
            "cached %llu, failed %llu",
            (unsigned long long)p->done, (unsigned long long)p->total,
            percent_of(p), rate_of(p), eta, (unsigned long long)p->fetched,
            (unsigned long long)p->cached, (unsigned long long)p->failed);
    } else {
        snprintf(buf, size,
            "%llu tiles, %.1f tiles/s, fetched %llu, cached %llu, "
            "failed %llu",
            (unsigned long long)p->done, rate_of(p),
            (unsigned long long)p->fetched, (unsigned long long)p->cached,
            (unsigned long long)p->failed);
    }
}
