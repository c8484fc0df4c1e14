"""
SPP, p2pd's peer protocol: the wire format (codec) and the Twisted protocol
that speaks it. The specification is docs/protocol.md.
"""
