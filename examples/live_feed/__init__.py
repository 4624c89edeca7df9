"""A live price feed that survives server and Redis restarts (topic history).

Start a private Redis, one server that publishes, one that serves clients,
and a follower (three terminals)::

    redis-server --port 6400 --save "" --appendonly no
    python -m examples.live_feed serve --port 8001 --redis redis://127.0.0.1:6400/0 --publish
    python -m examples.live_feed serve --port 8002 --redis redis://127.0.0.1:6400/0
    python -m examples.live_feed follow ws://127.0.0.1:8002/ws

Kill and restart the second server, or Redis, and watch the follower: after a
server restart it prints ``recovered`` and goes on from the next tick, none
missed or repeated; after a Redis restart without persistence it prints
``gap (epoch)`` and reloads a snapshot (with ``--appendonly yes --appendfsync
always`` it recovers instead).
"""
