"""
Conformance tests: a real p2pd node, driven only through bytes on a socket
with a frame writer and reader of their own, checked against every MUST of
docs/protocol.md (each test names the tag of the MUST it checks).
"""
