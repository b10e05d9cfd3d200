"""The platform's edge: what every service in front of a server does to a request, written once.

The Prefect gateway, the model server, the tracking server's and the data proxy's MLflow apps all
take requests from outside the stack. Each does the same five things, in this order, with the
code here (Starlette's ASGI idioms: small classes that wrap an app):

1. ``paths``: refuse a path that is not canonical (dot segments, empty segments, encoded ``/`` or
   ``%``, any encoding but the one canonical form), so the server behind never reads another path
   than the one decided on;
2. ``signin``: sign the caller in with their MLflow account (HTTP basic auth, or a token),
   through a bounded cache of good credentials and a brake on wrong passwords per account and
   client address (the client address taken from the TLS proxy's header only when the request
   comes from that proxy);
3. decide (each service's own policy, on the server's own reading of the request);
4. forward what was decided on, or answer (``answers``: one JSON shape per service);
5. count (``metrics``: requests by route template, bounded, never by raw path).

Installed with the MLflow apps (this path package) so the MLflow server's processes, which load
apps by entry point, import it as the other services do.
"""
