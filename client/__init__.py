"""The taas client: the Python SDK (`from client import Client`) and the `taas` commands that use it.

Installable on its own (`pip install '.[client]'`: httpx, httpx-sse, typer, rich): it imports no server package."""

from client.sdk import APIError, ChecksumMismatch, Client, StreamLost, TaasError

__all__ = ["APIError", "ChecksumMismatch", "Client", "StreamLost", "TaasError"]
