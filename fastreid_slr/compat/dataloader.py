"""fast-reid's ``DataLoaderX`` without its two faults: CUDA streams hard-coded (it cannot be built
on a machine without CUDA), and a prefetch thread that dies silently on an error, leaving its
consumer waiting forever. The ``cpu_safe_dataloader`` break installs it."""
import queue
import threading

import torch


class _PrefetchFailure:
    """Carries an exception from the prefetch thread to the consumer."""

    def __init__(self, exc: BaseException):
        self.exc = exc


_END_OF_DATA = object()


class _BackgroundPrefetcher(threading.Thread):
    """Prefetches batches in a thread; an exception in the thread is re-raised to the consumer.

    fast-reid's BackgroundGenerator dies silently on an exception and the consumer then waits on
    its queue forever.
    """

    def __init__(self, iterator, device: torch.device, max_prefetch: int = 10):
        super().__init__(daemon=True)
        self.queue = queue.Queue(max_prefetch)
        self.iterator = iterator
        self.device = device
        self.exit_event = threading.Event()
        self.start()

    def _put(self, item) -> bool:
        while not self.exit_event.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self):
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        try:
            for item in self.iterator:
                if not self._put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the consumer
            self._put(_PrefetchFailure(exc))
            return
        self._put(_END_OF_DATA)

    def __next__(self):
        item = self.queue.get()
        if item is _END_OF_DATA:
            self.queue.put(_END_OF_DATA)  # stay exhausted for later calls
            raise StopIteration
        if isinstance(item, _PrefetchFailure):
            raise item.exc
        return item

    def __iter__(self):
        return self

    def stop(self):
        self.exit_event.set()
        self.join(timeout=5)


class DeviceAwareDataLoaderX(torch.utils.data.DataLoader):
    """Drop-in for fast-reid's ``DataLoaderX``: prefetches in a thread, moves batches to the
    process's device, uses a CUDA side stream only when there is CUDA, and re-raises errors
    from the prefetch thread instead of hanging."""

    def __init__(self, local_rank, **kwargs):
        use_cuda = torch.cuda.is_available()
        kwargs["pin_memory"] = bool(kwargs.get("pin_memory", False)) and use_cuda
        super().__init__(**kwargs)
        self.local_rank = local_rank
        self.device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
        self.stream = torch.cuda.Stream(self.device) if use_cuda else None
        self.iter = None
        self.batch = None

    def __iter__(self):
        self.shutdown()
        self.iter = _BackgroundPrefetcher(super().__iter__(), self.device)
        self.preload()
        return self

    def preload(self):
        self.batch = next(self.iter, None)
        if self.batch is None or self.device.type != "cuda":
            return
        with torch.cuda.stream(self.stream):
            for key, value in self.batch.items():
                if isinstance(value, torch.Tensor):
                    self.batch[key] = value.to(self.device, non_blocking=True)

    def __next__(self):
        if self.stream is not None:
            torch.cuda.current_stream(self.device).wait_stream(self.stream)
        batch = self.batch
        if batch is None:
            raise StopIteration
        self.preload()
        return batch

    def shutdown(self):
        """Stop the prefetch thread (and with it the worker processes' iterator)."""
        if self.iter is not None:
            self.iter.stop()
            self.iter = None
