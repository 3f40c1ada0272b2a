#!/usr/bin/env python3
"""Static checks of contrib/k8s/ (python3-yaml; no cluster, no kubectl).

    schema.py DIR MANPAGE              the files in DIR, with kustomization.yaml
    schema.py --rendered FILE MANPAGE  the output of `kubectl kustomize DIR`

A small schema per kind (apiVersion, kind, metadata.name and the fields the
kinds here need), then the references between the objects: selectors and
labels, Service ports, ConfigMap/Secret volumes and keys, the HPA's target
and bounds, PDBs, the StatefulSet's headless Service and MEMCACHED_SERVERS,
probe paths against the endpoints hereproxy.fcgi(8) documents, memory limits
(at most 2Gi a pod) and the pod security settings.  Prints what it checked;
exit 1 on any error.
"""

import os
import re
import sys

import yaml

KINDS = {
    ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Service"),
    ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
}
MAX_POD_MEMORY = 2 * 1024 ** 3
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

errors = []
notes = []


def err(where, msg):
    errors.append("%s: %s" % (where, msg))


def quantity(q, where):
    """Kubernetes quantity -> number (bytes for memory, cores for CPU)."""
    s = str(q)
    m = re.fullmatch(r"([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", s)
    if not m:
        err(where, "bad quantity %r" % s)
        return 0
    mult = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
            "Ki": 1024, "Mi": 1024 ** 2, "Gi": 1024 ** 3, "Ti": 1024 ** 4}
    return float(m.group(1)) * mult[m.group(2)]


def size_setting(v):
    """hereproxy's CACHE_MAXBYTES syntax: digits with an optional K/M/G."""
    m = re.fullmatch(r"(\d+)([KMG]?)", str(v))
    return int(m.group(1)) * {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}[m.group(2)] if m else None


def need(obj, path, where, typ=None):
    cur = obj
    for p in path.split("."):
        if not isinstance(cur, dict) or p not in cur:
            err(where, "missing %s" % path)
            return None
        cur = cur[p]
    if typ is not None and not isinstance(cur, typ):
        err(where, "%s must be a %s" % (path, typ.__name__))
        return None
    return cur


def documented_endpoints(man):
    """Exact paths from the man page's ENDPOINTS list (.It Li GET|HEAD /x)."""
    eps = set()
    with open(man) as f:
        for line in f:
            m = re.match(r"^\.It Li [A-Z|]+ (/[A-Za-z0-9_/.-]*)\s*$", line)
            if m:
                eps.add(m.group(1))
    return eps


def selector_matches(sel, labels):
    return bool(sel) and all(labels.get(k) == v for k, v in sel.items())


def check_container(c, where, endpoints, configmaps, pod_sc):
    name = c.get("name", "?")
    w = "%s container %s" % (where, name)
    if not c.get("name") or not NAME.match(c["name"]):
        err(w, "needs a DNS-label name")
    if not c.get("image"):
        err(w, "no image")
    ports = {}
    for p in c.get("ports") or []:
        if not isinstance(p.get("containerPort"), int) or not 0 < p["containerPort"] < 65536:
            err(w, "bad containerPort %r" % p.get("containerPort"))
        ports[p.get("name")] = p.get("containerPort")
    res = c.get("resources") or {}
    lim = (res.get("limits") or {}).get("memory")
    req = res.get("requests") or {}
    if lim is None:
        err(w, "no memory limit")
        lim_b = 0
    else:
        lim_b = quantity(lim, w)
        if lim_b > MAX_POD_MEMORY:
            err(w, "memory limit %s is over 2Gi" % lim)
        if "memory" in req and quantity(req["memory"], w) > lim_b:
            err(w, "memory request above its limit")
    if "cpu" not in req:
        err(w, "no CPU request (the HPA's Utilization needs one)")
    sc = c.get("securityContext") or {}
    if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
        err(w, "runAsNonRoot is not set")
    if sc.get("runAsUser") == 0:
        err(w, "runs as uid 0")
    if sc.get("readOnlyRootFilesystem") is not True:
        err(w, "readOnlyRootFilesystem is not true")
    if sc.get("allowPrivilegeEscalation") is not False:
        err(w, "allowPrivilegeEscalation is not false")
    if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
        err(w, "capabilities.drop lacks ALL")
    if (sc.get("capabilities") or {}).get("add"):
        err(w, "adds capabilities")
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        pr = c.get(kind)
        if not pr:
            continue
        pw = "%s %s" % (w, kind)
        if "httpGet" in pr:
            path = pr["httpGet"].get("path")
            if path not in endpoints:
                err(pw, "path %r is not an endpoint hereproxy.fcgi(8) documents (%s)"
                    % (path, ", ".join(sorted(endpoints))))
            port = pr["httpGet"].get("port")
            if port not in ports and port not in ports.values():
                err(pw, "port %r is not a port of the container" % port)
        elif "tcpSocket" in pr:
            port = pr["tcpSocket"].get("port")
            if port not in ports and port not in ports.values():
                err(pw, "port %r is not a port of the container" % port)
        elif "exec" in pr:
            cmd = " ".join(pr["exec"].get("command") or [])
            for path in re.findall(r"REQUEST_URI=(\S+)", cmd):
                if path not in endpoints:
                    err(pw, "path %r is not a documented endpoint" % path)
        else:
            err(pw, "neither httpGet, tcpSocket nor exec")
    for ef in c.get("envFrom") or []:
        ref = (ef.get("configMapRef") or {}).get("name")
        if ref and ref not in configmaps:
            err(w, "envFrom names ConfigMap %s, which does not exist" % ref)
    return lim_b, ports


def main(argv):
    if len(argv) == 4 and argv[1] == "--rendered":
        with open(argv[2]) as f:
            docs = [(argv[2], d) for d in yaml.safe_load_all(f) if d]
        kust, man, d = None, argv[3], None
    elif len(argv) == 3:
        d, man = argv[1], argv[2]
        docs, kust = [], None
        for fn in sorted(os.listdir(d)):
            if not fn.endswith((".yaml", ".yml")):
                continue
            with open(os.path.join(d, fn)) as f:
                for doc in yaml.safe_load_all(f):
                    if not doc:
                        continue
                    if fn == "kustomization.yaml":
                        kust = doc
                    else:
                        docs.append((fn, doc))
        if kust is None:
            err(d, "no kustomization.yaml")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    endpoints = documented_endpoints(man)
    if not {"/healthz", "/readyz"} <= endpoints:
        err(man, "the endpoints list no longer has /healthz and /readyz")

    # ------------------------------------------------ per object: the schema
    by_kind = {}
    for fn, doc in docs:
        api, kind = doc.get("apiVersion"), doc.get("kind")
        name = (doc.get("metadata") or {}).get("name")
        w = "%s %s/%s" % (fn, kind, name)
        if not api or not kind or not name:
            err(w, "apiVersion, kind and metadata.name are required")
            continue
        if (api, kind) not in KINDS:
            err(w, "unexpected %s %s" % (api, kind))
        if not NAME.match(name):
            err(w, "metadata.name is not a DNS label")
        if name in by_kind.setdefault(kind, {}):
            err(w, "defined twice")
        by_kind[kind][name] = (fn, doc)
    cms = {n: d_["data"] or {} for n, (_, d_) in by_kind.get("ConfigMap", {}).items()
           if isinstance(d_.get("data"), dict)}
    secrets = {n: set((d_.get("data") or {}) | (d_.get("stringData") or {}))
               for n, (_, d_) in by_kind.get("Secret", {}).items()}
    if kust:
        for g in kust.get("secretGenerator") or []:
            keys = set()
            for f in g.get("files") or []:
                keys.add(f.split("=", 1)[0] if "=" in f else os.path.basename(f))
            secrets[g["name"]] = keys
        listed = set(kust.get("resources") or [])
        present = {fn for fn, _ in docs}
        for f in sorted(listed - present):
            err("kustomization.yaml", "resource %s does not exist" % f)
        for f in sorted(present - listed):
            err("kustomization.yaml", "%s is not in resources" % f)
        for im in kust.get("images") or []:
            if not im.get("name") or not (im.get("newName") or im.get("newTag")):
                err("kustomization.yaml", "images entry needs name and newName/newTag")

    workloads = {}
    for kind in ("Deployment", "StatefulSet"):
        for name, (fn, doc) in by_kind.get(kind, {}).items():
            w = "%s %s/%s" % (fn, kind, name)
            spec = need(doc, "spec", w, dict) or {}
            sel = need(spec, "selector.matchLabels", w, dict) or {}
            tmpl = need(spec, "template", w, dict) or {}
            labels = (tmpl.get("metadata") or {}).get("labels") or {}
            if not selector_matches(sel, labels):
                err(w, "selector.matchLabels does not match the template's labels")
            pod = need(tmpl, "spec", w, dict) or {}
            pod_sc = pod.get("securityContext") or {}
            if not pod_sc.get("runAsNonRoot"):
                err(w, "pod securityContext.runAsNonRoot is not true")
            if pod.get("automountServiceAccountToken") is not False:
                err(w, "automountServiceAccountToken is not false (no API access needed)")
            containers = need(pod, "containers", w, list) or []
            if not containers:
                err(w, "no containers")
            vols = {v.get("name"): v for v in pod.get("volumes") or []}
            total, ports = 0, {}
            for c in containers:
                b, p = check_container(c, w, endpoints, cms, pod_sc)
                total += b
                ports.update(p)
                for vm in c.get("volumeMounts") or []:
                    v = vols.get(vm.get("name"))
                    if v is None:
                        err(w, "container %s mounts unknown volume %s" % (c.get("name"), vm.get("name")))
                        continue
                    if "configMap" in v:
                        cm = v["configMap"].get("name")
                        if cm not in cms:
                            err(w, "volume %s: no ConfigMap %s" % (v["name"], cm))
                        elif vm.get("subPath") and vm["subPath"] not in cms[cm]:
                            err(w, "volume %s: ConfigMap %s has no key %s" % (v["name"], cm, vm["subPath"]))
                    if "secret" in v:
                        sn = v["secret"].get("secretName")
                        if sn not in secrets:
                            err(w, "volume %s: no Secret or secretGenerator %s" % (v["name"], sn))
                for e in c.get("env") or []:
                    if e.get("name") == "HERE_API_KEY_FILE":
                        mounts = [vm for vm in c.get("volumeMounts") or []
                                  if "secret" in vols.get(vm.get("name"), {})]
                        ok = False
                        for vm in mounts:
                            sn = vols[vm["name"]]["secret"]["secretName"]
                            for k in secrets.get(sn, ()):
                                if e.get("value") == vm["mountPath"].rstrip("/") + "/" + k:
                                    ok = True
                        if not ok:
                            err(w, "HERE_API_KEY_FILE=%s is not a key of a mounted Secret" % e.get("value"))
            if total > MAX_POD_MEMORY:
                err(w, "the pod's memory limits add up to over 2Gi")
            workloads[(kind, name)] = {"doc": doc, "labels": labels, "ports": ports,
                                       "replicas": spec.get("replicas", 1),
                                       "containers": containers, "mem": total}
            notes.append("%s/%s: %d containers, %d replicas, pod memory limit %dMi"
                         % (kind, name, len(containers), spec.get("replicas", 1), total / 1024 ** 2))

    # ------------------------------------------------ Services and PDBs
    for name, (fn, doc) in by_kind.get("Service", {}).items():
        w = "%s Service/%s" % (fn, name)
        sel = (doc.get("spec") or {}).get("selector") or {}
        hits = [wl for wl in workloads.values() if selector_matches(sel, wl["labels"])]
        if not hits:
            err(w, "the selector matches no workload")
        for p in (doc.get("spec") or {}).get("ports") or []:
            tp = p.get("targetPort", p.get("port"))
            for wl in hits:
                if tp not in wl["ports"] and tp not in wl["ports"].values():
                    err(w, "targetPort %r is not a container port" % tp)
    for name, (fn, doc) in by_kind.get("PodDisruptionBudget", {}).items():
        w = "%s PodDisruptionBudget/%s" % (fn, name)
        spec = doc.get("spec") or {}
        sel = (spec.get("selector") or {}).get("matchLabels") or {}
        hits = [wl for wl in workloads.values() if selector_matches(sel, wl["labels"])]
        if len(hits) != 1:
            err(w, "the selector matches %d workloads, not one" % len(hits))
        if spec.get("minAvailable") != 1:
            err(w, "minAvailable is not 1")
        for wl in hits:
            if wl["replicas"] <= spec.get("minAvailable", 0):
                err(w, "minAvailable %s leaves no pod to evict of %d" % (spec.get("minAvailable"), wl["replicas"]))

    # ------------------------------------------------ the HPA
    for name, (fn, doc) in by_kind.get("HorizontalPodAutoscaler", {}).items():
        w = "%s HorizontalPodAutoscaler/%s" % (fn, name)
        spec = doc.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        wl = workloads.get((ref.get("kind"), ref.get("name")))
        if wl is None:
            err(w, "scaleTargetRef %s/%s does not exist" % (ref.get("kind"), ref.get("name")))
        lo, hi = spec.get("minReplicas"), spec.get("maxReplicas")
        if (lo, hi) != (2, 10):
            err(w, "bounds are %s..%s, not 2..10" % (lo, hi))
        if not isinstance(lo, int) or not isinstance(hi, int) or not 1 <= lo <= hi:
            err(w, "needs 1 <= minReplicas <= maxReplicas")
        cpu = [m for m in spec.get("metrics") or []
               if m.get("type") == "Resource" and (m.get("resource") or {}).get("name") == "cpu"]
        if len(cpu) != 1 or cpu[0]["resource"].get("target", {}).get("type") != "Utilization" \
                or cpu[0]["resource"]["target"].get("averageUtilization") != 70:
            err(w, "needs one CPU metric with averageUtilization 70")
        if wl is not None:
            if isinstance(lo, int) and isinstance(hi, int) and not lo <= wl["replicas"] <= hi:
                err(w, "the Deployment's replicas (%s) are outside %s..%s" % (wl["replicas"], lo, hi))
            notes.append("HPA/%s: %s..%s replicas at 70%% CPU of %s/%s" % (name, lo, hi, ref.get("kind"), ref.get("name")))

    # ------------------------------------------------ memcached and hereproxy
    for name, (fn, doc) in by_kind.get("StatefulSet", {}).items():
        w = "%s StatefulSet/%s" % (fn, name)
        svc_name = (doc.get("spec") or {}).get("serviceName")
        svc = by_kind.get("Service", {}).get(svc_name)
        if svc is None:
            err(w, "serviceName %s is not a Service" % svc_name)
            continue
        sspec = svc[1].get("spec") or {}
        if sspec.get("clusterIP") != "None":
            err(w, "Service %s is not headless (clusterIP: None)" % svc_name)
        port = ((sspec.get("ports") or [{}])[0]).get("port")
        want = ["%s-%d.%s:%s" % (name, i, svc_name, port)
                for i in range(workloads[("StatefulSet", name)]["replicas"])]
        users = [(cm, data) for cm, data in cms.items() if "MEMCACHED_SERVERS" in data]
        if not users:
            err(w, "no ConfigMap sets MEMCACHED_SERVERS")
        for cm, data in users:
            have = data["MEMCACHED_SERVERS"].split(",")
            if have != want:
                err("ConfigMap/%s" % cm, "MEMCACHED_SERVERS is %s, the StatefulSet's pods are %s"
                    % (",".join(have), ",".join(want)))
            else:
                notes.append("MEMCACHED_SERVERS names the %d StatefulSet pods: %s" % (len(want), ",".join(want)))
    for (kind, name), wl in workloads.items():
        for c in wl["containers"]:
            env = {}
            for ef in c.get("envFrom") or []:
                env.update(cms.get((ef.get("configMapRef") or {}).get("name"), {}))
            if "CACHE_MAXBYTES" in env:
                cache = size_setting(env["CACHE_MAXBYTES"])
                lim = quantity(((c.get("resources") or {}).get("limits") or {}).get("memory", 0), name)
                if cache is None:
                    err(name, "CACHE_MAXBYTES %r is not a size" % env["CACHE_MAXBYTES"])
                elif cache + 128 * 1024 ** 2 > lim:
                    err("%s/%s container %s" % (kind, name, c.get("name")),
                        "memory limit leaves less than 128Mi beyond CACHE_MAXBYTES")
            if "HEREPROXY_LISTEN" in env:
                listen = env["HEREPROXY_LISTEN"]
                confs = [v for data in cms.values() for k, v in data.items() if k.endswith(".conf")]
                if not any(re.search(r"^\s*server\s+%s\s*;" % re.escape(listen), cf, re.M) for cf in confs):
                    err(name, "no NGINX upstream points at HEREPROXY_LISTEN=%s" % listen)
                if not listen.startswith("127.0.0.1:"):
                    notes.append("HEREPROXY_LISTEN %s is reachable beyond the pod" % listen)

    for n in notes:
        print(n)
    for e in errors:
        print("ERROR: " + e)
    print("%d objects (%s): %s" % (
        len(docs), ", ".join("%d %s" % (len(v), k) for k, v in sorted(by_kind.items())),
        "%d errors" % len(errors) if errors else "ok"))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
