"""The fault suite: ``python -m tests.chaos`` (``make chaos``); a short form runs in pytest (``test_short.py``).

Each scenario starts nats-server (one node, or a 3-node cluster), a real HTTP
receiver on loopback and the product's processes as separate ``turbohooks``
processes, publishes events at a steady rate while one fault is injected, then
compares what JetStream acknowledged, what the receiver got and what the
delivery log holds.
"""
