"""Talking to the proxies in front of a service: nginx (config check, reload) and HAProxy (config
check, reload, the runtime API on its stats socket), plus the small file and HTTP helpers the
traffic actions and the blue/green driver share. Plain Python; every call is bounded."""
