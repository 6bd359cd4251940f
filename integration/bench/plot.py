#!/usr/bin/python3
"""Tables and plots for snapshotter_bench.sh.

Usage: plot.py OUT_DIR DOC|- IMG_DIR
OUT_DIR holds what snapshotter_bench.sh wrote (results.tsv, images.tsv,
warm.tsv, shared_*.{json,tsv}, meta.json); an OUT_DIR/notes.md, if present,
is included as written at the top and OUT_DIR/analysis.md after the profile
(remarks about that run). The markdown section is printed and,
unless DOC is '-', replaces the text between the snapshotter-bench markers in
DOC (appended with the markers when absent). PNGs go to IMG_DIR.
"""
import csv
import json
import os
import re
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BEGIN, END = "<!-- snapshotter-bench:begin -->", "<!-- snapshotter-bench:end -->"
METHODS = ["overlayfs", "ocix", "stargz"]
COLORS = {"overlayfs": "#888888", "ocix": "#1f77b4", "stargz": "#ff7f0e"}


def rows(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def spread(xs, fmt):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    m = statistics.median(xs)
    if len(xs) == 1:
        return fmt(m)
    return f"{fmt(m)} ({fmt(min(xs))}–{fmt(max(xs))})"


def s3(x):
    return f"{x:.2f}"


def mb(x):
    return f"{x / 1e6:.2f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}"


def main():
    out, doc, img = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs(img, exist_ok=True)
    meta = json.load(open(os.path.join(out, "meta.json")))
    res = rows(os.path.join(out, "results.tsv"))
    # What the workload needed from the blobs: the frames of the chunks reads
    # were answered from (daemon counter); older runs: every chunk cached.
    need_key = ("served_frame_bytes" if any(r.get("served_frame_bytes") for r in res if r["method"] == "ocix")
                else "cache_frame_bytes")
    images = rows(os.path.join(out, "images.tsv"))
    warm = rows(os.path.join(out, "warm.tsv"))
    rate = str(meta["rate_mbit"])

    def cell(phase, w, m, key, r=rate):
        return [num(x.get(key)) for x in res if x["phase"] == phase and x["workload"] == w and x["method"] == m
                and x["rate_mbit"] == r]

    workloads = []
    for x in res:
        if x["phase"] == "cold" and x["workload"] not in workloads:
            workloads.append(x["workload"])
    methods = [m for m in METHODS if any(x["method"] == m for x in res)]
    L = []
    p = L.append
    wl = meta.get("workloads", {})
    p("## Snapshotters: cold start, bytes, shared cache, warm path (overlayfs vs ocix vs stargz)")
    p("")
    p("Command: `integration/bench/snapshotter_bench.sh` (as root; one run does everything below and writes this "
      "section and `docs/img/snapshotter_*.png`; knobs and details in `integration/bench/README.md`).")
    p("")
    p(f"Measured {meta['date']} by `{meta['command']}` ({meta['seconds']} s). "
      f"Machine: {meta['cores']} cores ({meta['cpu']}), {meta['mem_gib']} GiB, Linux {meta['kernel']}; "
      f"containerd {meta['containerd']}, {meta['ocix']}. Link: {meta['rate_mbit']} Mbit/s, RTT {meta['rtt_ms']} ms "
      f"(tbf + NFQUEUE delay in a router namespace, `integration/bench/netns.sh`), docker-registry behind it. "
      f"Every cell: median of {meta['runs']} runs, (min–max) in brackets; a run starts from a cold node "
      f"(containerd, ocix-snapshotter and stargz-grpc stopped, their roots — images, content, snapshots, chunk "
      f"cache — removed, page cache dropped, all restarted). Prefetch: ocix `[prefetch] mode = "
      f"\"{meta['ocix_prefetch']}\"`, stargz "
      + ("with its defaults" if meta["stargz_prefetch"] else "`noprefetch = true`, `no_background_fetch = true`")
      + " (no background fetching of whole layers by either). ocix read-ahead: `[fetch] readahead = "
      + f"\"{meta.get('ocix_readahead', '0')}\"` (on a miss, what follows in the blob when the reads show "
      "locality, and the rest of a file whose third read misses; see docs/CONFIGURATION.md); stargz fetches "
      "whole eStargz chunks (4 MiB by default) of the files read.")
    p("")
    notes = os.path.join(out, "notes.md")
    if os.path.exists(notes):
        p(open(notes).read().strip())
        p("")
    p("Methods: **overlayfs** = `ctr image pull --plain-http NAME:plain` (tar+gzip) + `ctr run`; "
      "**ocix** = `ocix pull --hosts-dir DIR NAME:ocix` + `ctr run --snapshotter ocix`; "
      "**stargz** = `ctr-remote image rpull --plain-http NAME:esgz` (`ctr-remote image convert --estargz --oci` "
      "of the same image; stargz-snapshotter v0.12 built from Debian's sources, `integration/bench/stargz/`) + "
      "`ctr run --snapshotter stargz`.")
    p("")
    p("Images (mmdebstrap bookworm `--variant=minbase`; shareda/sharedb: the minbase layer plus a layer above it):")
    p("")
    p("| image | contents | plain (tar+gzip) bytes | ocix bytes | eStargz bytes | layers |")
    p("| --- | --- | --- | --- | --- | --- |")
    desc = {"minbase": "minbase", "python3": "minbase + python3", "large": "minbase + gcc g++ python3-numpy",
            "shareda": "minbase layer + python3 layer", "sharedb": "minbase layer + python3 curl layer"}
    by = {(x["image"], x["format"]): x for x in images}
    for name in ["minbase", "python3", "large", "shareda", "sharedb"]:
        if (name, "plain") not in by:
            continue
        p(f"| {name} | {desc[name]} | {by[(name, 'plain')]['bytes']} | {by[(name, 'ocix')]['bytes']} | "
          f"{by[(name, 'esgz')]['bytes']} | {by[(name, 'plain')]['layers']} |")
    p("")
    p("Workloads (`sh -c CMD` in the container):")
    p("")
    p("| workload | image | command |")
    p("| --- | --- | --- |")
    for w, v in wl.items():
        cmd = v["cmd"].replace("|", "\\|")
        p(f"| {w} | {v['image']} | `{cmd}` |")
    p("")

    # --- cold start
    p(f"### Cold start (pull + run), {meta['rate_mbit']} Mbit/s, {meta['rtt_ms']} ms")
    p("")
    p("| workload | " + " | ".join(f"{m} total s" for m in methods) + " | overlayfs / ocix | stargz / ocix |")
    p("| --- | " + " | ".join("---" for _ in methods) + " | --- | --- |")
    for w in workloads:
        cells = [spread(cell("cold", w, m, "total_s"), s3) for m in methods]
        o, x, s = (med(cell("cold", w, m, "total_s")) for m in ("overlayfs", "ocix", "stargz"))
        p(f"| {w} | " + " | ".join(cells) + f" | {ratio(o, x)} | {ratio(s, x)} |")
    p("")
    p("Pull and run phases alone (s):")
    p("")
    p("| workload | " + " | ".join(f"{m} pull | {m} run" for m in methods) + " |")
    p("| --- | " + " | ".join("--- | ---" for _ in methods) + " |")
    for w in workloads:
        p(f"| {w} | " + " | ".join(f"{spread(cell('cold', w, m, 'pull_s'), s3)} | {spread(cell('cold', w, m, 'run_s'), s3)}"
                                   for m in methods) + " |")
    p("")

    # --- bytes
    p("### Bytes")
    p("")
    p("*registry* = response body bytes in the registry's access log during pull + run (manifests, configs, "
      "blobs, ranges); *read* = uncompressed bytes the workload read through ocix's FUSE mounts "
      "(`ocix_fuse_read_bytes_total`; the same files are read under every method); *needed* = compressed "
      "frame bytes of the chunks FUSE reads were answered from (`ocix_served_frame_bytes_total`: each chunk's "
      "`frame_size` from the layer's TOC, counted once per layer: the compressed bytes of the file chunks that were "
      "read) plus the TOC bytes (`toc.size` of every layer); *read-ahead* = frame bytes fetched ahead of reads "
      "(`ocix_readahead_frame_bytes_total`, `[fetch] readahead`), part of what ocix fetched whether read or not. "
      "MB = 10^6 bytes.")
    p("")
    p("| workload | " + " | ".join(f"{m} registry MB" for m in methods)
      + " | ocix read MB | ocix chunk frames MB | ocix read-ahead MB | TOC MB | ocix registry / needed "
      "| stargz / ocix registry | ocix range requests |")
    p("| --- | " + " | ".join("---" for _ in methods) + " | --- | --- | --- | --- | --- | --- | --- |")
    for w in workloads:
        cells = [spread(cell("cold", w, m, "registry_bytes"), mb) for m in methods]
        fr = med(cell("cold", w, "ocix", need_key))
        tb = med(cell("cold", w, "ocix", "toc_bytes"))
        reg_x = med(cell("cold", w, "ocix", "registry_bytes"))
        reg_s = med(cell("cold", w, "stargz", "registry_bytes"))
        need = fr + tb if fr is not None and tb is not None else None
        p(f"| {w} | " + " | ".join(cells) + f" | {spread(cell('cold', w, 'ocix', 'fuse_read_bytes'), mb)} | "
          f"{spread(cell('cold', w, 'ocix', need_key), mb)} | {spread(cell('cold', w, 'ocix', 'readahead_frame_bytes'), mb)} | "
          f"{mb(tb) if tb else '–'} | "
          f"{ratio(reg_x, need)} | {ratio(reg_s, reg_x)} | "
          f"{spread(cell('cold', w, 'ocix', 'fetch_requests'), lambda v: f'{v:.0f}')} |")
    p("")

    # --- shared
    sh = [x for x in res if x["phase"] == "shared"]
    if sh:
        uniq = json.load(open(os.path.join(out, "shared_unique.json"))) if os.path.exists(
            os.path.join(out, "shared_unique.json")) else {}
        new = []
        if os.path.exists(os.path.join(out, "shared_new.tsv")):
            for line in open(os.path.join(out, "shared_new.tsv")):
                f = line.split()
                new.append({"n": int(f[1]), "bytes": int(f[2]), "in_a": int(f[3]), "not_b": int(f[4])})
        p("### Shared cache: shareda, then sharedb on the same node")
        p("")
        p("shareda runs `python3 -c 'print(1)'` on a cold node, then sharedb (same minbase layer, a different layer above it "
          "that holds python3 again plus curl) runs `python3 -c 'print(1)'` and `curl --version`. "
          "Bytes and seconds of each step (pull + run):")
        p("")
        p("| method | shareda wire MB | sharedb wire MB | shareda run s | sharedb pull + run s |")
        p("| --- | --- | --- | --- | --- |")
        for m in methods:
            def g(w, k, m=m):
                return [num(x[k]) for x in sh if x["method"] == m and x["workload"] == w]
            p(f"| {m} | {spread(g('shareda', 'wire_bytes'), mb)} | {spread(g('sharedb', 'wire_bytes'), mb)} | "
              f"{spread(g('shareda', 'total_s'), s3)} | {spread(g('sharedb', 'total_s'), s3)} |")
        p("")
        p("(*wire* = IP bytes the router sent towards the node, TCP/IP headers included, about 0.5% above the "
          "response bytes.)")
        p("")
        bx = [x for x in sh if x["method"] == "ocix" and x["workload"] == "sharedb"]
        if bx and new:
            fetched_chunks = [num(x["fetched_chunks"]) for x in bx]
            p("ocix, sharedb's step: "
              f"chunks fetched {spread(fetched_chunks, lambda v: f'{v:.0f}')}; new chunks in the cache "
              f"{spread([n['n'] for n in new], lambda v: f'{v:.0f}')} with "
              f"{spread([n['bytes'] for n in new], mb)} MB of compressed frames; of those new chunks, "
              f"{max(n['in_a'] for n in new)} are also in shareda's layers (a chunk fetched although the cache "
              f"could have had it from shareda is only possible for those, and only if shareda did not read it); "
              f"ocix fetched {spread([num(x['ocix_fetched_bytes']) for x in bx], mb)} MB of chunk frames, "
              f"{spread([num(x['wire_bytes']) for x in bx], mb)} MB went over the wire. "
              f"All chunks of sharedb that shareda's layers lack: {uniq.get('unique_chunks', '?')} chunks, "
              f"{mb(uniq.get('unique_frame_bytes', 0))} MB of frames (of {mb(uniq.get('b_frame_bytes', 0))} MB "
              f"for all of sharedb).")
            p("")

    # --- warm
    if warm:
        p("### Warm path (large image, every chunk in ocix's cache)")
        p("")
        p("Timed inside the container (`date +%s%N` around the command), page, dentry and inode caches dropped "
          "before each container: sequential `cat` of the image's 20 largest files under /usr, and "
          "`find /usr -printf '%s %m %U\\n'` (stat of every path).")
        p("")
        rd = {m: [num(x["read_s"]) for x in warm if x["method"] == m] for m in ("overlayfs", "ocix")}
        wk = {m: [num(x["walk_s"]) for x in warm if x["method"] == m] for m in ("overlayfs", "ocix")}
        nbytes = warm[0]["bytes"]
        npaths = warm[0]["paths"]
        p("| measure | ocix | overlayfs | ocix / overlayfs |")
        p("| --- | --- | --- | --- |")
        p(f"| sequential read, {nbytes} bytes, s | {spread(rd['ocix'], lambda v: f'{v:.3f}')} | "
          f"{spread(rd['overlayfs'], lambda v: f'{v:.3f}')} | {ratio(med(rd['ocix']), med(rd['overlayfs']))} |")
        p(f"| find + stat of /usr, {npaths} paths, s | {spread(wk['ocix'], lambda v: f'{v:.3f}')} | "
          f"{spread(wk['overlayfs'], lambda v: f'{v:.3f}')} | {ratio(med(wk['ocix']), med(wk['overlayfs']))} |")
        rss = med([num(x["rss_kib"]) for x in warm if x["method"] == "ocix"])
        paths = None
        fj = os.path.join(out, "large.frames.json")
        if os.path.exists(fj):
            paths = json.load(open(fj))["paths"]
        if rss and paths:
            p("")
            p(f"ocix-snapshotter RSS after the walk: {rss:.0f} KiB with one layer of {paths} paths mounted = "
              f"{rss * 1024 / paths:.0f} bytes per path ({rss / paths * 10000:.0f} KiB per 10k paths; the daemon's "
              f"whole RSS, gRPC and metadata store included).")
        p("")

    # --- sweep
    sweep_rates = sorted({int(x["rate_mbit"]) for x in res if x["phase"] == "sweep"} | {int(rate)})
    sweep_w = sorted({x["workload"] for x in res if x["phase"] == "sweep"})
    if len(sweep_rates) > 1:
        p("### Cold start vs bandwidth")
        p("")
        for w in sweep_w:
            p(f"Workload {w}, RTT {meta['rtt_ms']} ms, total s:")
            p("")
            p("| Mbit/s | " + " | ".join(methods) + " | overlayfs / ocix | stargz / ocix |")
            p("| --- | " + " | ".join("---" for _ in methods) + " | --- | --- |")
            for r in sweep_rates:
                ph = "cold" if str(r) == rate else "sweep"
                c = {m: cell(ph, w, m, "total_s", str(r)) for m in methods}
                p(f"| {r} | " + " | ".join(spread(c[m], s3) for m in methods)
                  + f" | {ratio(med(c.get('overlayfs', [])), med(c.get('ocix', [])))} | "
                  f"{ratio(med(c.get('stargz', [])), med(c.get('ocix', [])))} |")
            p("")

    # --- goals
    p("### Goals (issue 6): where we stand")
    p("")
    p("| goal | measured | met |")
    p("| --- | --- | --- |")
    o, x = med(cell("cold", "python3", "overlayfs", "total_s")), med(cell("cold", "python3", "ocix", "total_s"))
    if o and x:
        p(f"| cold start python3 at {meta['rate_mbit']} Mbit/s: overlayfs / ocix >= 10 | {o / x:.2f} "
          f"({o:.2f} s / {x:.2f} s) | {'yes' if o / x >= 10 else 'no'} |")
    for w in workloads:
        fr = med(cell("cold", w, "ocix", need_key))
        tb = med(cell("cold", w, "ocix", "toc_bytes"))
        reg = med(cell("cold", w, "ocix", "registry_bytes"))
        if fr is not None and tb is not None and reg and fr + tb > 0:
            lim = 1.2 * fr + tb
            p(f"| {w}: registry bytes <= 1.2 x chunk frames + TOC | {reg / 1e6:.2f} MB vs limit {lim / 1e6:.2f} MB "
              f"({reg / lim:.2f} x the limit) | {'yes' if reg <= lim else 'no'} |")
    bx = [x_ for x_ in res if x_["phase"] == "shared" and x_["method"] == "ocix" and x_["workload"] == "sharedb"]
    newf = os.path.join(out, "shared_new.tsv")
    if bx and os.path.exists(newf):
        news = {l.split()[0]: int(l.split()[1]) for l in open(newf)}
        extra = [int(num(r["fetched_chunks"]) - news.get(r["run"], 0)) for r in bx]
        p(f"| sharedb after shareda: no byte fetched for a chunk already in the cache | chunks fetched minus "
          f"chunks new in the cache: {', '.join(map(str, extra))} (per run) | {'yes' if all(e <= 0 for e in extra) else 'no'} |")
    if warm:
        rr = ratio(med(rd["ocix"]), med(rd["overlayfs"]))
        wr = ratio(med(wk["ocix"]), med(wk["overlayfs"]))
        p(f"| warm sequential read within 10% of overlayfs | ocix / overlayfs = {rr} | "
          f"{'yes' if rr != '–' and float(rr) <= 1.10 else 'no'} |")
        p(f"| warm metadata walk within 30% of overlayfs | ocix / overlayfs = {wr} | "
          f"{'yes' if wr != '–' and float(wr) <= 1.30 else 'no'} |")
    if "stargz" in methods:
        for w in workloads:
            s_, x_ = med(cell("cold", w, "stargz", "total_s")), med(cell("cold", w, "ocix", "total_s"))
            if s_ and x_:
                p(f"| faster than stargz: {w} | stargz / ocix = {s_ / x_:.2f} ({s_:.2f} s / {x_:.2f} s) | "
                  f"{'yes' if s_ > x_ else 'no'} |")
    p("")

    # --- profile: where the time goes
    p("### Profile")
    p("")
    p("Cold start, ocix, per workload (medians): the run phase minus overlayfs' run phase (which starts the "
      "same container from local files) is the time the lazy mounts cost; *serial RTTs* = range requests x RTT "
      "(the latency if they were issued one after another); *transfer* = registry bytes / link rate.")
    p("")
    p("| workload | ocix pull s | ocix run s | overlayfs run s | lazy cost s | range requests | serial RTTs s "
      "| transfer s | ocix total s | overlayfs total / 10 |")
    p("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for w in workloads:
        xp, xr = med(cell("cold", w, "ocix", "pull_s")), med(cell("cold", w, "ocix", "run_s"))
        orun, otot = med(cell("cold", w, "overlayfs", "run_s")), med(cell("cold", w, "overlayfs", "total_s"))
        q = med(cell("cold", w, "ocix", "fetch_requests"))
        reg = med(cell("cold", w, "ocix", "registry_bytes"))
        xt = med(cell("cold", w, "ocix", "total_s"))
        if None in (xp, xr, orun, otot, reg, xt):
            continue
        rtt_s = float(meta["rtt_ms"]) / 1000
        tr = reg * 8 / (float(meta["rate_mbit"]) * 1e6) if float(meta["rate_mbit"]) else 0
        p(f"| {w} | {xp:.2f} | {xr:.2f} | {orun:.2f} | {xr - orun:.2f} | {'–' if q is None else f'{q:.0f}'} | "
          f"{'–' if q is None else f'{q * rtt_s:.2f}'} | {tr:.2f} | {xt:.2f} | {otot / 10:.2f} |")
    p("")
    if warm and "read_fuse_reads" in warm[0]:
        xw = [x_ for x_ in warm if x_["method"] == "ocix"]
        rdops = med([num(x_["read_fuse_reads"]) for x_ in xw])
        rdlk = med([num(x_["read_fuse_lookups"]) for x_ in xw])
        wklk = med([num(x_["walk_fuse_lookups"]) for x_ in xw])
        dr = (med(rd["ocix"]) or 0) - (med(rd["overlayfs"]) or 0)
        dw = (med(wk["ocix"]) or 0) - (med(wk["overlayfs"]) or 0)
        p(f"Warm path, ocix (medians per run, from `ocix_fuse_operations_total`): the sequential read took {rdops:.0f} FUSE reads ({int(nbytes) / max(rdops, 1) / 1024:.0f} KiB "
          f"per read) and {rdlk:.0f} lookups; its time beyond overlayfs is {dr * 1e6 / max(rdops, 1):.0f} µs per "
          f"FUSE read ({dr:.3f} s in all). The walk's time beyond overlayfs is {dw:.3f} s = "
          f"{dw * 1e6 / max(int(npaths), 1):.1f} µs per path for {npaths} paths, with {wklk:.0f} FUSE lookups; "
          f"page, dentry and inode caches were dropped before each container, so both sides start from the disk.")
        p("")

    analysis = os.path.join(out, "analysis.md")
    if os.path.exists(analysis):
        p(open(analysis).read().strip())
        p("")

    # --- plots
    import numpy as np
    pngs = []
    if workloads:
        fig, ax = plt.subplots(figsize=(8, 4))
        xs = np.arange(len(workloads))
        wd = 0.8 / len(methods)
        for i, m in enumerate(methods):
            ms = [med(cell("cold", w, m, "total_s")) or 0 for w in workloads]
            lo = [ms[j] - min(cell("cold", w, m, "total_s") or [0]) for j, w in enumerate(workloads)]
            hi = [max(cell("cold", w, m, "total_s") or [0]) - ms[j] for j, w in enumerate(workloads)]
            ax.bar(xs + i * wd, ms, wd, yerr=[lo, hi], label=m, color=COLORS[m], capsize=3)
        ax.set_xticks(xs + wd * (len(methods) - 1) / 2, workloads)
        ax.set_ylabel("pull + run, s (median, min–max)")
        ax.set_title(f"Cold start, {meta['rate_mbit']} Mbit/s, RTT {meta['rtt_ms']} ms")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(img, "snapshotter_cold_start.png"), dpi=100)
        pngs.append(("Cold start per workload and method", "snapshotter_cold_start.png"))
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(8, 4))
        series = [(f"{m}: registry", lambda w, m=m: med(cell("cold", w, m, "registry_bytes")), COLORS[m]) for m in methods]
        series += [("ocix: chunk frames read + TOC",
                    lambda w: (med(cell("cold", w, "ocix", need_key)) or 0)
                    + (med(cell("cold", w, "ocix", "toc_bytes")) or 0), "#2ca02c"),
                   ("uncompressed bytes read", lambda w: med(cell("cold", w, "ocix", "fuse_read_bytes")), "#9467bd")]
        wd = 0.8 / len(series)
        for i, (lab, f, col) in enumerate(series):
            ax.bar(xs + i * wd, [(f(w) or 0) / 1e6 for w in workloads], wd, label=lab, color=col)
        ax.set_xticks(xs + wd * (len(series) - 1) / 2, workloads)
        ax.set_yscale("log")
        ax.set_ylabel("MB (log)")
        ax.set_title("Bytes fetched vs bytes read (cold start)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(img, "snapshotter_bytes.png"), dpi=100)
        pngs.append(("Bytes fetched vs bytes read", "snapshotter_bytes.png"))
        plt.close(fig)
    if len(sweep_rates) > 1:
        fig, ax = plt.subplots(figsize=(6, 4))
        for w in sweep_w:
            for m in methods:
                ys = []
                for r in sweep_rates:
                    ph = "cold" if str(r) == rate else "sweep"
                    ys.append(med(cell(ph, w, m, "total_s", str(r))))
                ax.plot(sweep_rates, ys, marker="o", label=f"{m} ({w})", color=COLORS[m])
        ax.set_xscale("log")
        ax.set_xticks(sweep_rates, [str(r) for r in sweep_rates])
        ax.set_xlabel("link rate, Mbit/s")
        ax.set_ylabel("pull + run, s (median)")
        ax.set_title(f"Cold start vs bandwidth, RTT {meta['rtt_ms']} ms")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(img, "snapshotter_bandwidth.png"), dpi=100)
        pngs.append(("Cold start vs bandwidth", "snapshotter_bandwidth.png"))
        plt.close(fig)
    for title, f in pngs:
        p(f"![{title}](img/{f})")
        p("")

    text = "\n".join(L).rstrip() + "\n"
    print(text)
    if doc != "-":
        d = open(doc).read() if os.path.exists(doc) else ""
        block = BEGIN + "\n" + text + END
        if BEGIN in d and END in d:
            d = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, d, flags=re.S)
        else:
            d = d.rstrip() + "\n\n" + block + "\n"
        open(doc, "w").write(d)


if __name__ == "__main__":
    main()
