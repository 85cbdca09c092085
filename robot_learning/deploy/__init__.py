"""Serving a trained policy over a websocket (``server``) and the standalone client (``client``)."""
