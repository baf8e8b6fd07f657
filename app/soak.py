"""Load and soak of the running server: sessions that come and go, and one that stays.

    python -m app.soak load [--waves 4] [--sessions 6] [--seconds 20] [--out docs/load]
    python -m app.soak soak [--minutes 30] [--every 30] [--out docs/soak]

Both start ``python app.py``'s server in this process (``app.http_load.Server``: 127.0.0.1,
the visitors' limits of ``streaming.limits``) and drive it with simulated browsers in a
process of their own, speaking Gradio's HTTP queue protocol as the page does (a JPEG frame
every 0.2 s, a 0.5 s WAV chunk every 0.5 s, the real clips of ../shared/data/real joined
and looped; ``app.http_load.stream_session``).

``load``: ``--waves`` times, ``--sessions`` browsers connect (staggered over a second),
stream for ``--seconds`` and leave; the server's idle reaper closes their sessions
``--idle-timeout`` seconds later. After each wave: did every browser get its own session
and its windows (at least 80 % of one per hop, no error: no session lost), how many
sessions are still open, and the server's resident memory, OS threads and open files,
against the baseline taken after the first wave (the libraries' pools are warm by then).

``soak``: one browser streams for ``--minutes``; every ``--every`` seconds the server's
resident memory, OS threads and open file descriptors are sampled (after a garbage
collection); the growth of memory after the first 5 minutes is the figure (issue 12's floor:
under 5 %). Writes ``OUT.json``, ``OUT.md`` and a plot ``OUT.png``.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import time
import uuid
from datetime import date
from pathlib import Path

from streaming.bench import machine

ROOT = Path(__file__).resolve().parents[1]


def process_figures() -> dict:
    """This process's resident memory (MB, now, not the peak), OS threads and open file
    descriptors, after a garbage collection."""
    gc.collect()
    page = os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * page / 2**20
    return {
        "rss_mb": round(rss, 1),
        "threads": len(os.listdir("/proc/self/task")),
        "open_files": len(os.listdir("/proc/self/fd")),
    }


def _start_browsers(url: str, config: dict, media, n: int, seconds: float, lead_s: float = 3.0):
    """``n`` simulated browsers in a spawned process, starting ``lead_s`` from now; returns
    (process, result queue, session hashes, start time)."""
    from app.http_load import _browsers_in_process

    hashes = [uuid.uuid4().hex[:11] for _ in range(n)]
    start = time.perf_counter() + lead_s
    ctx = multiprocessing.get_context("spawn")
    done = ctx.Queue()
    args = (url, config, media, hashes, start, seconds, 1.0)
    proc = ctx.Process(target=_browsers_in_process, args=(done, *args), daemon=True)
    proc.start()
    return proc, done, hashes, start


def _config(url: str) -> dict:
    import httpx

    with httpx.Client(base_url=url, timeout=30) as http:
        return http.get("/config").json()


# ---------------------------------------------------------------------- load
def load(waves: int, n: int, seconds: float, idle_timeout_s: float) -> dict:
    """The ``load`` command's figures (module docstring)."""
    from tqdm import tqdm

    from app.http_load import Media, Server
    from app.sessions import App

    media = Media.real_clips()
    app = App(max_sessions=n, idle_timeout_s=idle_timeout_s, reap_every_s=1.0)
    app.new_asr()
    rows = []
    with Server(app) as server:
        config = _config(server.url)
        start_figures = process_figures()
        for wave in tqdm(range(waves), desc="load waves"):
            proc, done, hashes, start = _start_browsers(server.url, config, media, n, seconds)
            sessions = {}
            while time.perf_counter() < start + seconds + 2.5:
                for h in hashes:
                    s = app.session_for(h)
                    if s is not None:
                        sessions[h] = s
                time.sleep(0.1)
            sent = done.get(timeout=120)
            proc.join(timeout=30)
            if "failed" in sent:
                raise RuntimeError(f"the simulated browsers failed: {sent['failed']}")
            expected = seconds - 3  # windows end from 3 s on, one a second
            windows = [len(sessions[h].windows()) if h in sessions else 0 for h in hashes]
            lost = sum(w < 0.8 * expected for w in windows)  # a browser without its session counts 0
            # the browsers left: their sessions are closed by the reaper once idle
            deadline = time.perf_counter() + idle_timeout_s + 10
            while app.open_sessions() and time.perf_counter() < deadline:
                time.sleep(0.5)
            open_after = app.open_sessions()
            found = len(sessions)
            sessions.clear()
            time.sleep(1.0)
            row = {
                "wave": wave + 1,
                "sessions": n,
                "sessions_found": found,
                "windows_min": min(windows),
                "windows_max": max(windows),
                "sessions_lost": lost,
                "errors": sent["errors"] + sent["send_errors"],
                "refused": app.refused,
                "open_after_leaving": open_after,
                **process_figures(),
            }
            rows.append(row)
            tqdm.write(json.dumps(row))
        # what the departed sessions still hold is their gr.State, which Gradio keeps until it
        # expires (time_to_live, 15 minutes): expire it now, as Gradio's timer would
        from app.sessions import release_memory

        for session_hash in list(server.demo.state_holder.session_data):
            server.demo.state_holder.delete_state(session_hash)
        release_memory()
        time.sleep(1.0)
        expired = process_figures()
        tqdm.write(json.dumps({"after the states expired": expired}))
    app.close()
    base = rows[0]
    last = rows[-1]
    return {
        "command": "load",
        "machine": machine(),
        "date": str(date.today()),
        "waves": waves,
        "sessions": n,
        "seconds": seconds,
        "idle_timeout_s": idle_timeout_s,
        "before_first_wave": start_figures,
        "rows": rows,
        "sessions_lost": sum(r["sessions_lost"] for r in rows),
        "errors": sum(r["errors"] for r in rows),
        "rss_growth_after_first_wave_pct": round(100 * (last["rss_mb"] - base["rss_mb"]) / base["rss_mb"], 1),
        "after_states_expired": expired,
        "rss_growth_after_states_expired_pct": round(100 * (expired["rss_mb"] - base["rss_mb"]) / base["rss_mb"], 1),
        "threads_after_first_wave": base["threads"],
        "threads_at_end": last["threads"],
        "open_files_after_first_wave": base["open_files"],
        "open_files_at_end": last["open_files"],
    }


# ---------------------------------------------------------------------- soak
def soak(minutes: float, every_s: float) -> dict:
    """The ``soak`` command's figures (module docstring)."""
    from tqdm import tqdm

    from app.http_load import Media, Server
    from app.sessions import App

    media = Media.real_clips()
    app = App(max_sessions=1)
    app.new_asr()
    seconds = minutes * 60
    samples = []
    with Server(app) as server:
        proc, done, hashes, start = _start_browsers(server.url, _config(server.url), media, 1, seconds)
        bar = tqdm(total=round(seconds), unit="s", desc="soak")
        session = None
        while time.perf_counter() < start + seconds:
            time.sleep(max(0.0, min(every_s, start + seconds - time.perf_counter())))
            session = session or app.session_for(hashes[0])
            t = time.perf_counter() - start
            sample = {"t_s": round(t, 1), **process_figures()}
            if session is not None:
                ws = session.windows(60)
                sample["windows"] = len(session.results)
                sample["latency_ms_last_minute_p95"] = (
                    round(sorted(w.latency_ms for w in ws)[int(0.95 * (len(ws) - 1))], 1) if ws else None
                )
            samples.append(sample)
            bar.n = min(round(t), round(seconds))
            bar.refresh()
        bar.close()
        sent = done.get(timeout=120)
        proc.join(timeout=30)
        windows = len(session.results) if session is not None else 0
    app.close()
    if "failed" in sent:
        raise RuntimeError(f"the simulated browser failed: {sent['failed']}")
    after5 = [s for s in samples if s["t_s"] >= 300] or samples
    ref, end = after5[0], samples[-1]
    return {
        "command": "soak",
        "machine": machine(),
        "date": str(date.today()),
        "minutes": minutes,
        "samples": samples,
        "windows": windows,
        "windows_expected": int(seconds - 3),
        "errors": sent["errors"] + sent["send_errors"],
        "rss_mb_at_5_min": ref["rss_mb"],
        "rss_mb_at_end": end["rss_mb"],
        "rss_growth_after_5_min_pct": round(100 * (end["rss_mb"] - ref["rss_mb"]) / ref["rss_mb"], 2),
        "rss_mb_max_after_5_min": max(s["rss_mb"] for s in after5),
        "threads_min_max": [min(s["threads"] for s in samples), max(s["threads"] for s in samples)],
        "open_files_min_max": [min(s["open_files"] for s in samples), max(s["open_files"] for s in samples)],
    }


# ---------------------------------------------------------------------- reports
def write_load(res: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    lines = [
        "# Load: sessions that come and go",
        "",
        f"`python -m app.soak load --waves {res['waves']} --sessions {res['sessions']} --seconds {res['seconds']:g}`, "
        f"{res['date']}, {res['machine']}. Each wave: {res['sessions']} simulated browsers (real clips, 5 frames and two "
        f"0.5 s chunks a second, in a process of their own) stream for {res['seconds']:g} s through the running server "
        f"and leave; idle sessions are closed {res['idle_timeout_s']:g} s after their last input.",
        "",
        "| wave | windows per session (min-max) | sessions lost | errors | open after leaving | RSS MB | threads | open files |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| before | | | | | {res['before_first_wave']['rss_mb']:.0f} | {res['before_first_wave']['threads']} | "
        f"{res['before_first_wave']['open_files']} |",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['wave']} | {r['windows_min']}-{r['windows_max']} | {r['sessions_lost']} | {r['errors']} | "
            f"{r['open_after_leaving']} | {r['rss_mb']:.0f} | {r['threads']} | {r['open_files']} |"
        )
    lines += [
        f"| states expired | | | | | {res['after_states_expired']['rss_mb']:.0f} | "
        f"{res['after_states_expired']['threads']} | {res['after_states_expired']['open_files']} |",
        "",
        f"Sessions lost: {res['sessions_lost']}; errors: {res['errors']}. Memory after the last wave against after "
        f"the first: {res['rss_growth_after_first_wave_pct']:+.1f} % (the departed sessions' gr.State, which Gradio "
        "keeps until it expires 15 minutes after its last use; a closed session's media, frames and recogniser buffer "
        "are freed when it closes); once those states expire (forced here, as Gradio's timer does it): "
        f"{res['rss_growth_after_states_expired_pct']:+.1f} %. Threads {res['threads_after_first_wave']} -> "
        f"{res['threads_at_end']}; open files {res['open_files_after_first_wave']} -> {res['open_files_at_end']}.",
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(lines))


def write_soak(res: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    t = [s["t_s"] / 60 for s in res["samples"]]
    fig, axes = plt.subplots(3, 1, figsize=(8, 6), sharex=True)
    for ax, key, label in zip(axes, ("rss_mb", "threads", "open_files"), ("resident MB", "OS threads", "open files")):
        ax.plot(t, [s[key] for s in res["samples"]], lw=1.5)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].axvline(5, color="grey", ls="--", lw=1)
    axes[-1].set_xlabel("minutes of one live session")
    fig.suptitle(f"Soak, one live session, {res['minutes']:g} min ({res['date']})")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=80)
    plt.close(fig)
    lines = [
        "# Soak: one live session",
        "",
        f"`python -m app.soak soak --minutes {res['minutes']:g}`, {res['date']}, {res['machine']}. One simulated "
        "browser (real clips, looped) streams through the running server; every sample is the server process's "
        "resident memory, OS threads and open file descriptors after a garbage collection.",
        "",
        f"- memory: {res['rss_mb_at_5_min']:.0f} MB at 5 minutes, {res['rss_mb_at_end']:.0f} MB at the end: "
        f"**{res['rss_growth_after_5_min_pct']:+.2f} %** (floor: under 5 %); the most after 5 minutes "
        f"{res['rss_mb_max_after_5_min']:.0f} MB",
        f"- OS threads: {res['threads_min_max'][0]} to {res['threads_min_max'][1]}; open files: "
        f"{res['open_files_min_max'][0]} to {res['open_files_min_max'][1]}",
        f"- windows: {res['windows']} of {res['windows_expected']} expected; errors: {res['errors']}",
        "",
        f"![memory, threads and open files over the soak]({out.with_suffix('.png').name})",
        "",
        "| minute | RSS MB | threads | open files | windows | latency p95, last minute (ms) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for s in res["samples"]:
        if s is res["samples"][-1] or round(s["t_s"]) % 300 < res.get("every_s", 30):
            lines.append(
                f"| {s['t_s'] / 60:.1f} | {s['rss_mb']:.0f} | {s['threads']} | {s['open_files']} | {s.get('windows', '')} | "
                f"{s.get('latency_ms_last_minute_p95', '')} |"
            )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    lo = sub.add_parser("load", help="sessions that connect, stream and leave, in waves")
    lo.add_argument("--waves", type=int, default=4)
    lo.add_argument("--sessions", type=int, default=6)
    lo.add_argument("--seconds", type=float, default=20.0)
    lo.add_argument("--idle-timeout", type=float, default=5.0, help="the server's idle timeout for this run, s")
    lo.add_argument("--out", default=str(ROOT / "docs" / "load"))
    so = sub.add_parser("soak", help="one live session for a long time")
    so.add_argument("--minutes", type=float, default=30.0)
    so.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    so.add_argument("--out", default=str(ROOT / "docs" / "soak"))
    a = ap.parse_args(argv)
    if a.command == "load":
        res = load(a.waves, a.sessions, a.seconds, a.idle_timeout)
        write_load(res, Path(a.out))
    else:
        res = soak(a.minutes, a.every)
        res["every_s"] = a.every
        write_soak(res, Path(a.out))
    print(json.dumps({k: v for k, v in res.items() if k not in ("rows", "samples")}, indent=1))
    return res


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    main()
