"""Gather crops from several cameras into one embedder call (max batch or max wait)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from queue import Empty, Queue

import numpy as np

from reid.runtime.base import Embedder, Embeddings


class CropBatcher:
    """Thread-safe front of an :class:`Embedder`.

    ``submit(crops)`` returns a future; a worker thread runs the embedder on up to
    ``max_batch`` crops gathered from all callers, waiting at most ``max_wait_s`` after the
    first request so a lone camera is not held back. Errors reach every caller in the batch.
    """

    def __init__(self, embedder: Embedder, max_batch: int = 32, max_wait_s: float = 0.01) -> None:
        self.embedder, self.max_batch, self.max_wait_s = embedder, max_batch, max_wait_s
        self._queue: Queue[tuple[list[np.ndarray], Future[Embeddings]] | None] = Queue()
        self.batches = 0
        self._thread = threading.Thread(target=self._work, name="crop-batcher", daemon=True)
        self._thread.start()

    def submit(self, crops: Sequence[np.ndarray]) -> Future[Embeddings]:
        future: Future[Embeddings] = Future()
        if len(crops) == 0:
            future.set_exception(ValueError("no crops given"))
        else:
            self._queue.put((list(crops), future))
        return future

    def embed(self, crops: Sequence[np.ndarray]) -> Embeddings:
        return self.submit(crops).result()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _work(self) -> None:
        carry: tuple[list[np.ndarray], Future[Embeddings]] | None = None
        while True:
            first = carry or self._queue.get()
            carry = None
            if first is None:
                return
            requests = [first]
            size = len(first[0])
            deadline = time.monotonic() + self.max_wait_s
            while size < self.max_batch:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except Empty:
                    break
                if item is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                if size + len(item[0]) > self.max_batch:
                    carry = item
                    break
                requests.append(item)
                size += len(item[0])
            self._run(requests)

    def _run(self, requests: list[tuple[list[np.ndarray], Future[Embeddings]]]) -> None:
        crops = [c for r, _ in requests for c in r]
        try:
            result = self.embedder.embed(crops)
        except Exception as exc:  # delivered to the callers, who know what to do with it
            for _, future in requests:
                future.set_exception(exc)
            return
        self.batches += 1
        offset = 0
        for r, future in requests:
            future.set_result(result[offset : offset + len(r)])
            offset += len(r)
