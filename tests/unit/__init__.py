"""
Unit tests: in memory (L{StringTransport}, L{task.Clock},
L{MemoryReactorClock}, the fakes of L{tests.fakes}), no process, no socket
listening; the whole package runs in seconds.
"""
