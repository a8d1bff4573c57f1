#!/usr/bin/env python3
"""userdb at scale: authkit beside Courier's own tools, at 1k / 100k / 1M accounts.

For each size, in one run, on the same synthetic single-file userdb (one line a
user, ``uNNNNNNN@example.com<TAB>uid=..|gid=..|home=..|mail=..|systempw=$6$...``,
239 bytes a line, as in perf-baselines.md section 4):

* **compile**: ``bin/authkit makeuserdb`` (two processes, and ``--single-process``)
  against Courier's ``makeuserdb -f FILE`` (perl + two makedatprog); wall time and
  peak RSS (``wait4``); authkit's time split into text parsing (a parse-only pass)
  and GDBM stores (the rest);
* **password change, end to end, compiled files kept current**:
  ``bin/authkit test NAME OLD NEW`` (one process: check the old sha512-crypt hash,
  hash the new one, rewrite the text, copy-on-write the shadow file) against
  Courier's flow for the same change, ``userdb -f FILE NAME set systempw=HASH`` +
  ``makeuserdb -f FILE`` (what authdaemond's PASSWD runs); with authkit's time
  broken down in-process (journal, find, text splice, shadow copy, GDBM store,
  fsync);
* **lookup**: ``bin/authkit test NAME`` (whole process, median) and an in-process
  ``UserdbSource.lookup`` (open + get of both files, median), and, when a
  CourierLab can run (root), Courier's ``authtest NAME`` through authdaemond on the
  same files.

Usage: ``python3 bench/bench_userdb_scale.py [--sizes 1000,100000,1000000]
[--out DIR] [--json FILE] [--chart PNG]``.  Needs Debian's /usr/bin/python3
(bin/authkit); Courier's columns need courier-authlib-userdb (and root for the
authtest column); the chart needs matplotlib (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / "bin" / "authkit"
SYSTEM_PYTHON = "/usr/bin/python3"
MAKEUSERDB = "/usr/sbin/makeuserdb"
USERDB = "/usr/sbin/userdb"
PASSWORD = "pw-sha512crypt"
# sha512-crypt of PASSWORD (mkpasswd -m sha512crypt), the same on every line
HASH = ("$6$JnuJPyIoI7szigg1$XPK3xt5h0ytNIvCKAP7CEcQsHzIlawRQJRkbpEOARk0hOY8qFrmP724JTSC3"
        "CvekCP7Wjje3RddOlL/xLiESL.")
ENV = {"PATH": "/usr/sbin:/usr/bin:/bin", "LANG": "C", "LC_ALL": "C"}


def user(i: int) -> str:
    return f"u{i:07d}@example.com"


def generate(path: Path, count: int) -> None:
    """Write the synthetic userdb (mode 0600)."""
    with open(path, "w", buffering=1 << 20) as out:
        for i in range(count):
            u = f"u{i:07d}"
            out.write(f"{u}@example.com\tuid=1000|gid=1000|home=/home/vmail/example.com/{u}|"
                      f"mail=/home/vmail/example.com/{u}/Maildir|systempw={HASH}\n")
    os.chmod(path, 0o600)


def timed(argv: list[str], input: bytes | None = None) -> tuple[float, int, subprocess.CompletedProcess]:
    """Run ``argv``; (wall seconds, peak RSS KiB, completed process).  The peak
    RSS comes from GNU time (``/usr/bin/time -f %M``: the largest process of the
    tree), because ``wait4`` from this Python would report at least this
    process's own RSS (Linux keeps ``maxrss`` across fork and exec).  Raises on a
    non-zero exit."""
    wrapper = ["/usr/bin/time", "-f", "%M"] if os.access("/usr/bin/time", os.X_OK) else []
    start = time.perf_counter()
    done = subprocess.run(wrapper + argv, input=input, capture_output=True, env=ENV)
    elapsed = time.perf_counter() - start
    rss = 0
    err = done.stderr
    if wrapper:
        err, _, last = err.rstrip(b"\n").rpartition(b"\n")
        rss = int(last) if last.isdigit() else 0
    if done.returncode != 0:
        raise RuntimeError(f"{argv} exited {done.returncode}: {err.decode(errors='replace')}")
    return elapsed, rss, subprocess.CompletedProcess(argv, 0, done.stdout, err)


def authkit(*argv: str) -> list[str]:
    return [str(BIN), *argv]


# ---------------------------------------------------------------- in-process helpers (run by SYSTEM_PYTHON)


def helper_parse(path: str) -> None:
    """Time a parse-only pass (what makeuserdb does besides GDBM stores)."""
    sys.path.insert(0, str(REPO))
    from authkit.userdb.compile import iter_records, source_files, split_record

    start = time.perf_counter()
    for _p, _n, _name, fields, location, _s in iter_records(source_files(path)):
        split_record(fields, location)
    print(json.dumps({"parse_s": time.perf_counter() - start}))


def helper_change(path: str, name: str, old: str, new: str) -> None:
    """One password change through UserdbSource, with its steps timed."""
    sys.path.insert(0, str(REPO))
    from authkit.userdb import atomic, edit, gdbm, journal, recordstore
    from authkit.userdb.source import UserdbSource

    spent: dict[str, float] = {}

    def wrap(module: object, attr: str, label: str) -> None:
        original = getattr(module, attr)

        def timed_call(*a: object, **k: object) -> object:
            t = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t

        setattr(module, attr, timed_call)

    wrap(journal, "write", "journal (write+fsync)")
    wrap(edit, "_find_line", "find record (pread chunks)")
    wrap(recordstore, "store", "pre-check of compiled record")
    wrap(atomic, "prepare_splice", "text rewrite (copy_file_range+fsync)")
    wrap(gdbm.GdbmWriter, "store", "GDBM store")
    wrap(gdbm.GdbmWriter, "sync", "GDBM sync (fsync)")
    wrap(recordstore, "prepare", "compiled copy-on-write (copy+store+fsync, pre-check included)")
    wrap(atomic.Replacement, "commit", "renames + directory fsync")
    source = UserdbSource(path, hash_scheme="sha512-crypt")
    from authkit import schemes

    wrap(schemes, "verify_password", "verify old hash")
    wrap(schemes, "make_password_hash", "hash new password")
    start = time.perf_counter()
    source.change_password(name, old.encode(), new.encode(), "login")
    spent["total"] = time.perf_counter() - start
    print(json.dumps(spent))


def helper_lookup(path: str, name: str, rounds: int) -> None:
    """In-process UserdbSource.lookup: open + get of both compiled files."""
    sys.path.insert(0, str(REPO))
    from authkit.userdb.source import UserdbSource

    source = UserdbSource(path)
    source.lookup(name)
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        source.lookup(name)
        times.append(time.perf_counter() - t)
    print(json.dumps({"lookup_ms": statistics.median(times) * 1000}))


def helper(argv: list[str]) -> list[str]:
    return [SYSTEM_PYTHON, "-I", str(Path(__file__).resolve()), "--helper", *argv]


# ---------------------------------------------------------------- the benchmark


def median_run(argv: list[str], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=ENV)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def courier_available() -> bool:
    return os.access(MAKEUSERDB, os.X_OK) and os.access(USERDB, os.X_OK)


def bench_size(count: int, workdir: Path, lookup_rounds: int) -> dict:
    row: dict = {"accounts": count}
    ours = workdir / f"ak{count}" / "userdb"
    theirs = workdir / f"co{count}" / "userdb"
    for p in (ours, theirs):
        p.parent.mkdir(mode=0o700)
    generate(ours, count)
    shutil.copyfile(ours, theirs)
    os.chmod(theirs, 0o600)
    row["text_mb"] = ours.stat().st_size / 1e6
    name = user(count // 2)

    # compile, interleaved: authkit, Courier, authkit single-process
    row["compile_authkit_s"], row["compile_authkit_rss_kb"], _ = timed(authkit("--userdb", str(ours), "makeuserdb"))
    if courier_available():
        row["compile_courier_s"], row["compile_courier_rss_kb"], _ = timed([MAKEUSERDB, "-f", str(theirs)])
        row["dat_mb_courier"] = (Path(f"{theirs}.dat").stat().st_size + Path(f"{theirs}shadow.dat").stat().st_size) / 1e6
    row["compile_authkit_single_s"], row["compile_authkit_single_rss_kb"], _ = timed(
        authkit("--userdb", str(ours), "makeuserdb", "--single-process"))
    row["dat_mb_authkit"] = (Path(f"{ours}.dat").stat().st_size + Path(f"{ours}shadow.dat").stat().st_size) / 1e6
    _, _, done = timed(helper(["parse", str(ours)]))
    row["compile_parse_s"] = json.loads(done.stdout)["parse_s"]

    # password change end to end
    row["change_authkit_s"], row["change_authkit_rss_kb"], _ = timed(
        authkit("--userdb", str(ours), "test", name, PASSWORD, "N3w-" + PASSWORD))
    _, _, done = timed(helper(["change", str(ours), name, "N3w-" + PASSWORD, PASSWORD]))
    row["change_breakdown_s"] = json.loads(done.stdout)
    if courier_available():
        _, _, hashed = timed(authkit("pw", "--scheme", "md5-crypt"), input=b"N3w-" + PASSWORD.encode() + b"\n")
        row["change_courier_userdb_s"], _, _ = timed([USERDB, "-f", str(theirs), name, "set",
                                                      "systempw=" + hashed.stdout.decode().strip()])
        row["change_courier_makeuserdb_s"], _, _ = timed([MAKEUSERDB, "-f", str(theirs)])
        row["change_courier_s"] = row["change_courier_userdb_s"] + row["change_courier_makeuserdb_s"]

    # lookup
    row["lookup_authkit_process_ms"] = median_run(authkit("--userdb", str(ours), "test", name), lookup_rounds) * 1000
    _, _, done = timed(helper(["lookup", str(ours), name, str(lookup_rounds * 4)]))
    row["lookup_authkit_inprocess_ms"] = json.loads(done.stdout)["lookup_ms"]
    row.update(courier_lookup(theirs, name, lookup_rounds))
    row["interpreter_ms"] = median_run([SYSTEM_PYTHON, "-I", "-S", "-c", "pass"], lookup_rounds) * 1000
    return row


def courier_lookup(userdb: Path, name: str, rounds: int) -> dict:
    """Courier's authtest through authdaemond on Courier's compiled files (needs a
    CourierLab: root, unshare, nsenter)."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from courierlab import CourierLab, missing_requirements
    except ImportError:
        return {}
    if missing_requirements():
        return {}
    with tempfile.TemporaryDirectory(dir=userdb.parent) as tmp:
        with CourierLab(Path(tmp)) as lab:
            for src, dst in ((f"{userdb}.dat", lab.dat_path), (f"{userdb}shadow.dat", lab.shadow_path)):
                os.link(src, dst)
            lab.start_daemon()
            lab.authtest(name)
            times = []
            for _ in range(rounds):
                t = time.perf_counter()
                proc = lab.authtest(name)
                times.append(time.perf_counter() - t)
                assert proc.returncode == 0, proc.stderr
            bare = []
            for _ in range(rounds):
                t = time.perf_counter()
                lab.run(["/bin/true"])
                bare.append(time.perf_counter() - t)
            return {"lookup_courier_authtest_ms": statistics.median(times) * 1000,
                    "nsenter_overhead_ms": statistics.median(bare) * 1000}


def chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["accounts"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    series = [
        (axes[0], "makeuserdb (compile), s", [("compile_courier_s", "Courier makeuserdb"),
                                               ("compile_authkit_s", "authkit makeuserdb"),
                                               ("compile_authkit_single_s", "authkit --single-process"),
                                               ("compile_parse_s", "authkit: parsing share")]),
        (axes[1], "one password change, compiled files current, s",
         [("change_courier_s", "Courier userdb set + makeuserdb"), ("change_authkit_s", "authkit test NAME OLD NEW")]),
        (axes[2], "one lookup, whole process, ms", [("lookup_courier_authtest_ms", "Courier authtest (authdaemond)"),
                                                    ("lookup_authkit_process_ms", "authkit test NAME"),
                                                    ("interpreter_ms", "python3 -I -S -c pass")]),
    ]
    for ax, title, keys in series:
        for key, label in keys:
            pts = [(r["accounts"], r[key]) for r in rows if key in r]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{x:,}" for x in xs])
        ax.set_xlabel("accounts")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Courier userdb at scale: authkit vs Courier's tools (same run, same files)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if args[:1] == ["--helper"]:
        kind, rest = args[1], args[2:]
        if kind == "parse":
            helper_parse(*rest)
        elif kind == "change":
            helper_change(*rest)
        elif kind == "lookup":
            helper_lookup(rest[0], rest[1], int(rest[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--out", help="work directory (default: a temporary one, removed)")
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--chart", help="write a PNG chart here (needs matplotlib)")
    parser.add_argument("--lookup-rounds", type=int, default=15)
    opts = parser.parse_args(args)
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        print(f"needs {SYSTEM_PYTHON} (bin/authkit)", file=sys.stderr)
        return 2
    sizes = [int(s) for s in opts.sizes.split(",")]
    work = Path(opts.out) if opts.out else Path(tempfile.mkdtemp(prefix="bench-userdb-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for count in sizes:
            directory = work / str(count)
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True)
            try:
                row = bench_size(count, directory, opts.lookup_rounds)
            finally:
                shutil.rmtree(directory, ignore_errors=True)
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        if not opts.out:
            shutil.rmtree(work, ignore_errors=True)
    if opts.json:
        Path(opts.json).write_text(json.dumps({"rows": rows, "machine": machine()}, indent=1) + "\n")
    if opts.chart:
        chart(rows, Path(opts.chart))
    return 0


def machine() -> dict:
    return {"nproc": os.cpu_count(), "load": os.getloadavg(), "python": sys.version.split()[0],
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "maxrss_self_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


if __name__ == "__main__":
    sys.exit(main())
