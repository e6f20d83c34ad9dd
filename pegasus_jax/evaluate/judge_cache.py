"""On-disk cache of accepted judge answers (sqlite), keyed by a hash of judge identity + messages,
so a rerun of an evaluation sends no request for anything it already has."""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading


def cache_key(identity: dict, messages: list[dict]) -> str:
    canonical = json.dumps({"judge": identity, "messages": messages}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class JudgeCache:
    def __init__(self, path: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False)  # shared by the worker threads, under _lock
        with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, answer TEXT NOT NULL)")
            self._db.commit()

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, answer: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO answers (key, answer) VALUES (?, ?)", (key, answer))
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()
