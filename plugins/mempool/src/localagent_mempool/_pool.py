"""``BufferPool``: a bounded pool of reusable ``bytearray`` buffers in power-of-two size classes.

Pure code, no I/O. A buffer's class is the power of two at or below its
allocated size (``bytearray.__alloc__()``), so a buffer that grew while a
large frame was encoded into it goes back to a larger class. Only idle
buffers are pooled; a buffer handed out by :meth:`BufferPool.acquire` belongs
to its caller until :meth:`BufferPool.release`, so no two frames in flight
ever share one.
"""

from __future__ import annotations

from ._defaults import DEFAULT_MAX_BUFFER, DEFAULT_MAX_PER_CLASS, DEFAULT_MAX_POOLED, MIN_CLASS

__all__ = ["BufferPool"]


class BufferPool:
    """Reusable buffers, bounded in count per class and in bytes overall.

    Args:
        max_per_class: Idle buffers kept per size class.
        max_pooled: Most bytes (allocated sizes) the idle buffers hold together.
        max_buffer: Buffers allocated larger than this are never pooled.

    Attributes:
        created: Buffers made because no pooled one fitted.
        reused: Acquisitions served from the pool.
        dropped: Released buffers freed instead of pooled (over a bound).
    """

    __slots__ = (
        "_free",
        "_idle_ids",
        "_pooled_bytes",
        "created",
        "dropped",
        "max_buffer",
        "max_per_class",
        "max_pooled",
        "reused",
    )

    def __init__(
        self,
        *,
        max_per_class: int = DEFAULT_MAX_PER_CLASS,
        max_pooled: int = DEFAULT_MAX_POOLED,
        max_buffer: int = DEFAULT_MAX_BUFFER,
    ) -> None:
        if max_per_class < 0 or max_pooled < 0 or max_buffer < 0:
            raise ValueError("pool bounds must not be negative")
        self.max_per_class = max_per_class
        self.max_pooled = max_pooled
        self.max_buffer = max_buffer
        #: Idle buffers by size class, most recently released last.
        self._free: dict[int, list[bytearray]] = {}
        #: ``id()`` of every idle buffer: a buffer released twice is caught in O(1).
        self._idle_ids: set[int] = set()
        self._pooled_bytes = 0
        self.created = 0
        self.reused = 0
        self.dropped = 0

    def __repr__(self) -> str:
        return (
            f"<BufferPool idle={self.idle} pooled_bytes={self._pooled_bytes} "
            f"created={self.created} reused={self.reused} dropped={self.dropped}>"
        )

    @property
    def idle(self) -> int:
        """Buffers waiting in the pool."""
        return sum(len(buffers) for buffers in self._free.values())

    @property
    def pooled_bytes(self) -> int:
        """Bytes allocated by the idle buffers (never more than ``max_pooled``)."""
        return self._pooled_bytes

    def acquire(self, size_hint: int = 0) -> bytearray:
        """A buffer with room for about ``size_hint`` bytes.

        Takes a pooled buffer of the hint's class or the next larger one;
        otherwise makes a new one of ``size_hint`` bytes. Its contents are
        whatever was there: write it with ``encode_into`` (offset 0), which
        overwrites and sets its length, keeping the allocation.
        """
        # Runs once per frame, so kept to a few operations. A class is floor(log2(size)).
        wanted = size_hint.bit_length() - 1
        if wanted < MIN_CLASS:
            wanted = MIN_CLASS
        free = self._free
        buffers = free.get(wanted) or free.get(wanted + 1)
        if buffers:
            buffer = buffers.pop()
            self._idle_ids.discard(id(buffer))
            self._pooled_bytes -= buffer.__alloc__()
            self.reused += 1
            return buffer
        self.created += 1
        return bytearray(size_hint)

    def release(self, buffer: bytearray) -> None:
        """Give ``buffer`` back: pooled if within the bounds, else left to be freed."""
        key = id(buffer)
        idle_ids = self._idle_ids
        if key in idle_ids:
            raise ValueError("this buffer is already in the pool (released twice)")
        allocated = buffer.__alloc__()
        size_class = allocated.bit_length() - 1
        if size_class < MIN_CLASS:
            size_class = MIN_CLASS
        buffers = self._free.get(size_class)
        if buffers is None:
            buffers = self._free[size_class] = []
        if (
            allocated > self.max_buffer
            or len(buffers) >= self.max_per_class
            or self._pooled_bytes + allocated > self.max_pooled
        ):
            self.dropped += 1
            return
        buffers.append(buffer)
        idle_ids.add(key)
        self._pooled_bytes += allocated

    def trim(self, max_pooled: int) -> int:
        """Lower (or raise) ``max_pooled``, dropping idle buffers, largest first, to fit it.

        For a monitor relieving memory pressure; setting the old bound back
        undoes it (the pool refills as buffers are released).

        Returns:
            The bytes of the idle buffers dropped.
        """
        if max_pooled < 0:
            raise ValueError("pool bounds must not be negative")
        self.max_pooled = max_pooled
        dropped = 0
        for size_class in sorted(self._free, reverse=True):
            buffers = self._free[size_class]
            while buffers and self._pooled_bytes > max_pooled:
                buffer = buffers.pop()
                self._idle_ids.discard(id(buffer))
                allocated = buffer.__alloc__()
                self._pooled_bytes -= allocated
                dropped += allocated
                self.dropped += 1
        return dropped

    def stats(self) -> dict[str, int]:
        """The counters and the pool's current size."""
        return {
            "created": self.created,
            "reused": self.reused,
            "dropped": self.dropped,
            "idle": self.idle,
            "pooled_bytes": self._pooled_bytes,
        }
