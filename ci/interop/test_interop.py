#!/usr/bin/env python3
"""Interop test: a Python gRPC client built only from proto/prism/**/*.proto talks to prism-proxy:
KeyValue, PubSub (publish, subscribe), Queue (enqueue, consume, ack, nack), Multicast Registry
(register, enumerate, listen, multicast, watch), Mailbox (deliver, query, get, delete), Admin,
health, reflection and authentication.

Run by ci/interop/run.sh, which generates the stubs into a temp dir and starts the proxy with
`auth.mode: jwt` and an HS256 secret file. The test mints its own tokens (PyJWT) from that secret
and sends them as `authorization: Bearer <JWT>`. Environment:

  PRISM_INTEROP_TARGET       host:port of the running proxy (required)
  PRISM_INTEROP_STUBS        directory holding the generated prism/... Python modules (required)
  PRISM_INTEROP_SECRET_FILE  file holding the proxy's HS256 secret, trailing newline ignored
                             (required)
  PRISM_INTEROP_ISSUER       the proxy's auth.issuer; put in every token's `iss` when set
  PRISM_INTEROP_AUDIENCE     the proxy's auth.audience; put in every token's `aud` when set
  PRISM_INTEROP_NAMESPACES   KeyValue namespaces: namespace=backend_kind pairs, comma-separated
                             (default: interop-mem=memstore,interop-lite=sqlite)
  PRISM_INTEROP_PUBSUB       a PubSub namespace (default: interop-events)
  PRISM_INTEROP_QUEUE        a Queue namespace (default: interop-jobs)
  PRISM_INTEROP_REGISTRY     a Multicast Registry namespace (default: interop-registry)
  PRISM_INTEROP_MAILBOX      a Mailbox namespace (default: interop-mail)

Plain unittest; the last line of output is `interop: N passed, M failed`, exit status 0 only when every
case passed.
"""

import json
import os
import random
import secrets
import sys
import time
import unittest
import uuid

TARGET = os.environ.get("PRISM_INTEROP_TARGET", "")
STUBS = os.environ.get("PRISM_INTEROP_STUBS", "")
SECRET_FILE = os.environ.get("PRISM_INTEROP_SECRET_FILE", "")
ISSUER = os.environ.get("PRISM_INTEROP_ISSUER", "")
AUDIENCE = os.environ.get("PRISM_INTEROP_AUDIENCE", "")
NAMESPACES = [
    tuple(pair.split("=", 1))
    for pair in os.environ.get(
        "PRISM_INTEROP_NAMESPACES", "interop-mem=memstore,interop-lite=sqlite"
    ).split(",")
    if pair
]

PUBSUB_NS = os.environ.get("PRISM_INTEROP_PUBSUB", "interop-events")
QUEUE_NS = os.environ.get("PRISM_INTEROP_QUEUE", "interop-jobs")
REGISTRY_NS = os.environ.get("PRISM_INTEROP_REGISTRY", "interop-registry")
MAILBOX_NS = os.environ.get("PRISM_INTEROP_MAILBOX", "interop-mail")
ADMIN = os.environ.get("PRISM_INTEROP_ADMIN", "")

if not TARGET or not STUBS or not SECRET_FILE:
    sys.exit(
        "PRISM_INTEROP_TARGET, PRISM_INTEROP_STUBS and PRISM_INTEROP_SECRET_FILE must be set "
        "(run ci/interop/run.sh)"
    )
with open(SECRET_FILE, "rb") as _f:
    SECRET = _f.read().rstrip(b"\r\n")  # the proxy ignores a trailing newline too
sys.path.insert(0, STUBS)

import grpc  # noqa: E402
import jwt  # noqa: E402  (PyJWT)
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

# Generated from the .proto files only; nothing here knows about the Rust code.
from prism.admin.v1 import admin_pb2, admin_pb2_grpc  # noqa: E402
from prism.filter.v1 import filter_pb2  # noqa: E402
from prism.keyvalue.v1 import keyvalue_pb2, keyvalue_pb2_grpc  # noqa: E402
from prism.mailbox.v1 import mailbox_pb2, mailbox_pb2_grpc  # noqa: E402
from prism.pubsub.v1 import pubsub_pb2, pubsub_pb2_grpc  # noqa: E402
from prism.queue.v1 import queue_pb2, queue_pb2_grpc  # noqa: E402
from prism.registry.v1 import registry_pb2, registry_pb2_grpc  # noqa: E402

NAMESPACE_HEADER = "x-prism-namespace"
TIMEOUT = 10.0  # seconds, per call
TOKEN_LIFETIME = 300  # seconds; tokens are minted per test case
ALL_PERMISSIONS = ["read", "write", "admin"]
# A fresh prefix per run, so reruns against a persistent backend never see old keys.
RUN_PREFIX = f"interop/{uuid.uuid4().hex}/"

channel = None


def setUpModule():
    global channel
    channel = grpc.insecure_channel(TARGET)
    grpc.channel_ready_future(channel).result(timeout=TIMEOUT)


def tearDownModule():
    if channel is not None:
        channel.close()


def mint(namespaces=None, *, secret=None, lifetime=TOKEN_LIFETIME, issuer=None, audience=None):
    """An HS256 token granting `namespaces` ({namespace or glob: [permissions]}; default: every
    permission on every test namespace), valid for `lifetime` seconds (negative: expired)."""
    if namespaces is None:
        namespaces = {ns: ALL_PERMISSIONS for ns, _ in NAMESPACES}
        namespaces.update(
            {ns: ALL_PERMISSIONS for ns in (PUBSUB_NS, QUEUE_NS, REGISTRY_NS, MAILBOX_NS)}
        )
    now = int(time.time())
    claims = {
        "sub": "prism-interop-test",
        "iat": now,
        "exp": now + lifetime,
        "prism": {"namespaces": namespaces},
    }
    issuer = ISSUER if issuer is None else issuer
    audience = AUDIENCE if audience is None else audience
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, SECRET if secret is None else secret, algorithm="HS256")


def auth_md(token=None):
    """Metadata carrying `token` (default: a fresh token with every permission)."""
    return (("authorization", f"Bearer {token if token is not None else mint()}"),)


def ns_md(namespace, token=None):
    """Metadata addressing `namespace`, authenticated with `token` (default: every permission)."""
    return ((NAMESPACE_HEADER, namespace),) + auth_md(token)


class RpcAssertions:
    def assertRpcError(self, code, fn, *args, **kwargs):
        """Calls fn and asserts it fails with the gRPC status `code`."""
        with self.assertRaises(grpc.RpcError) as ctx:
            fn(*args, **kwargs)
        err = ctx.exception
        self.assertEqual(
            err.code(), code, f"expected {code.name}, got {err.code().name}: {err.details()!r}"
        )
        return err

    def assertDetailsContain(self, err, *parts):
        details = err.details() or ""
        for part in parts:
            self.assertIn(part, details, f"{err.code().name} details {details!r} lack {part!r}")


class KeyValueCases(RpcAssertions):
    """The KeyValue and Admin checks, run once per namespace by the subclasses made below."""

    NAMESPACE = ""
    BACKEND_KIND = ""

    def setUp(self):
        self.kv = keyvalue_pb2_grpc.KeyValueStub(channel)
        self.admin = admin_pb2_grpc.AdminStub(channel)
        self.md = ns_md(self.NAMESPACE)
        # Unique per run, namespace and test case.
        self.prefix = f"{RUN_PREFIX}{self.NAMESPACE}/{self._testMethodName}/"

    def set(self, key, value, **kwargs):
        return self.kv.Set(
            keyvalue_pb2.SetRequest(key=key, value=value, **kwargs), metadata=self.md, timeout=TIMEOUT
        )

    def get(self, key):
        return self.kv.Get(keyvalue_pb2.GetRequest(key=key), metadata=self.md, timeout=TIMEOUT)

    def scan(self, **kwargs):
        return self.kv.Scan(keyvalue_pb2.ScanRequest(**kwargs), metadata=self.md, timeout=TIMEOUT)

    def test_set_then_get(self):
        key = self.prefix + "k"
        written = self.set(key, b"hello interop")
        self.assertGreater(written.version, 0)
        got = self.get(key)
        self.assertTrue(got.found)
        self.assertEqual(got.value, b"hello interop")
        self.assertGreater(got.version, 0)
        self.assertEqual(got.version, written.version)

    def test_second_set_has_larger_version(self):
        key = self.prefix + "k"
        first = self.set(key, b"one")
        second = self.set(key, b"two")
        self.assertGreater(first.version, 0)
        self.assertGreater(second.version, first.version)
        got = self.get(key)
        self.assertEqual((got.found, got.value, got.version), (True, b"two", second.version))

    def test_get_missing_key_is_not_found_with_ok(self):
        # A failing status would raise grpc.RpcError; with_call also exposes the call's status code.
        resp, call = self.kv.Get.with_call(
            keyvalue_pb2.GetRequest(key=self.prefix + "absent"), metadata=self.md, timeout=TIMEOUT
        )
        self.assertEqual(call.code(), grpc.StatusCode.OK)
        self.assertFalse(resp.found)
        self.assertEqual(resp.value, b"")

    def test_binary_value_round_trips(self):
        key = self.prefix + "bin"
        value = bytes(range(256)) + bytes(reversed(range(256)))
        self.assertEqual(len(set(value)), 256)
        self.set(key, value)
        got = self.get(key)
        self.assertTrue(got.found)
        self.assertEqual(got.value, value)

    def _scan_keys(self):
        # Byte order differs from insertion order and from case-insensitive order; "é" is two UTF-8
        # bytes above ASCII.
        names = ["b", "a", "B", "a0", "\u00e9"]
        keys = [self.prefix + n for n in names]
        values = {k: f"value of {k}".encode() for k in keys}
        shuffled = list(keys)
        random.shuffle(shuffled)
        for k in shuffled:
            self.set(k, values[k])
        return sorted(keys, key=lambda k: k.encode("utf-8")), values

    def _scan_all(self, limit, keys_only=False):
        items, cursor, pages = [], "", 0
        while True:
            page = self.scan(prefix=self.prefix, cursor=cursor, limit=limit, keys_only=keys_only)
            pages += 1
            self.assertLessEqual(len(page.items), limit, f"page {pages} exceeds limit {limit}")
            items.extend(page.items)
            cursor = page.next_cursor
            if not cursor:
                return items, pages
            self.assertLess(pages, 20, "scan does not terminate")

    def test_scan_pages_in_byte_order(self):
        expected, values = self._scan_keys()
        items, pages = self._scan_all(limit=2)
        self.assertEqual([i.key for i in items], expected)
        self.assertEqual([i.value for i in items], [values[k] for k in expected])
        self.assertGreaterEqual(pages, 3, "5 keys with limit=2 need at least 3 pages")

    def test_scan_keys_only_returns_empty_values(self):
        expected, _ = self._scan_keys()
        items, _ = self._scan_all(limit=2, keys_only=True)
        self.assertEqual([i.key for i in items], expected)
        self.assertEqual([i.value for i in items], [b""] * len(expected))

    def test_set_empty_key_is_invalid_argument(self):
        self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, self.set, "", b"v")

    def test_if_absent_on_existing_key_is_already_exists(self):
        key = self.prefix + "k"
        first = self.set(key, b"first", if_absent=True)
        self.assertGreater(first.version, 0)
        self.assertRpcError(
            grpc.StatusCode.ALREADY_EXISTS, self.set, key, b"second", if_absent=True
        )
        got = self.get(key)
        self.assertEqual((got.value, got.version), (b"first", first.version))

    def test_delete_and_exists(self):
        key = self.prefix + "k"
        self.set(key, b"v")
        exists = self.kv.Exists(keyvalue_pb2.ExistsRequest(key=key), metadata=self.md, timeout=TIMEOUT)
        self.assertTrue(exists.exists)
        deleted = self.kv.Delete(keyvalue_pb2.DeleteRequest(key=key), metadata=self.md, timeout=TIMEOUT)
        self.assertTrue(deleted.deleted)
        again = self.kv.Delete(keyvalue_pb2.DeleteRequest(key=key), metadata=self.md, timeout=TIMEOUT)
        self.assertFalse(again.deleted, "a second delete finds nothing")
        gone = self.kv.Exists(keyvalue_pb2.ExistsRequest(key=key), metadata=self.md, timeout=TIMEOUT)
        self.assertFalse(gone.exists)
        self.assertFalse(self.get(key).found)

    def test_batch_set_get_delete_in_request_order(self):
        keys = [self.prefix + n for n in ("z", "a", "m")]
        entries = [keyvalue_pb2.BatchSetEntry(key=k, value=k.encode()) for k in keys]
        written = self.kv.BatchSet(
            keyvalue_pb2.BatchSetRequest(entries=entries), metadata=self.md, timeout=TIMEOUT
        )
        self.assertEqual(len(written.versions), 3)
        self.assertTrue(all(v > 0 for v in written.versions))
        asked = [keys[2], self.prefix + "absent", keys[0]]
        got = self.kv.BatchGet(
            keyvalue_pb2.BatchGetRequest(keys=asked), metadata=self.md, timeout=TIMEOUT
        )
        self.assertEqual(
            [(r.found, r.value) for r in got.results],
            [(True, keys[2].encode()), (False, b""), (True, keys[0].encode())],
        )
        self.assertEqual(got.results[0].version, written.versions[2])
        deleted = self.kv.BatchDelete(
            keyvalue_pb2.BatchDeleteRequest(keys=keys + [self.prefix + "absent"]),
            metadata=self.md,
            timeout=TIMEOUT,
        )
        self.assertEqual(deleted.deleted, 3, "the absent key is not counted")
        self.assertFalse(self.get(keys[1]).found)

    def test_expire_sets_and_removes_the_ttl(self):
        key = self.prefix + "k"
        self.set(key, b"v")
        self.assertEqual(self.get(key).ttl_ms, 0)
        set_ttl = self.kv.Expire(
            keyvalue_pb2.ExpireRequest(key=key, ttl_ms=600_000), metadata=self.md, timeout=TIMEOUT
        )
        self.assertTrue(set_ttl.updated)
        ttl = self.get(key).ttl_ms
        self.assertTrue(0 < ttl <= 600_000, ttl)
        cleared = self.kv.Expire(
            keyvalue_pb2.ExpireRequest(key=key, ttl_ms=0), metadata=self.md, timeout=TIMEOUT
        )
        self.assertTrue(cleared.updated)
        self.assertEqual(self.get(key).ttl_ms, 0)
        missing = self.kv.Expire(
            keyvalue_pb2.ExpireRequest(key=self.prefix + "absent", ttl_ms=1000),
            metadata=self.md,
            timeout=TIMEOUT,
        )
        self.assertFalse(missing.updated)

    def test_admin_capabilities(self):
        caps = self.admin.GetCapabilities(
            admin_pb2.GetCapabilitiesRequest(namespace=self.NAMESPACE),
            metadata=auth_md(),
            timeout=TIMEOUT,
        )
        self.assertEqual(caps.namespace, self.NAMESPACE)
        self.assertEqual(caps.pattern, "keyvalue")
        self.assertEqual(caps.backend_kind, self.BACKEND_KIND)
        self.assertIn("keyvalue.basic", caps.capabilities)
        # This test relies on Scan and if_absent, so the namespace must declare them too.
        self.assertIn("keyvalue.scan", caps.capabilities)
        self.assertIn("keyvalue.cas", caps.capabilities)

    def test_admin_capabilities_auth_mode_is_jwt(self):
        caps = self.admin.GetCapabilities(
            admin_pb2.GetCapabilitiesRequest(namespace=self.NAMESPACE),
            metadata=auth_md(),
            timeout=TIMEOUT,
        )
        self.assertEqual(caps.auth_mode, "jwt")

    def test_admin_capabilities_needs_admin_permission(self):
        token = mint({self.NAMESPACE: ["read", "write"]})
        err = self.assertRpcError(
            grpc.StatusCode.PERMISSION_DENIED,
            self.admin.GetCapabilities,
            admin_pb2.GetCapabilitiesRequest(namespace=self.NAMESPACE),
            metadata=auth_md(token),
            timeout=TIMEOUT,
        )
        self.assertDetailsContain(err, f"'{self.NAMESPACE}'", "admin")

    def test_read_only_token_can_get_but_not_set(self):
        key = self.prefix + "k"
        value = b"written with a full token"
        written = self.set(key, value)
        read_only = mint({self.NAMESPACE: ["read"]})
        got = self.kv.Get(
            keyvalue_pb2.GetRequest(key=key),
            metadata=ns_md(self.NAMESPACE, read_only),
            timeout=TIMEOUT,
        )
        self.assertEqual((got.found, got.value, got.version), (True, value, written.version))
        for method, request in (
            (self.kv.Set, keyvalue_pb2.SetRequest(key=key, value=b"overwrite")),
            (self.kv.Delete, keyvalue_pb2.DeleteRequest(key=key)),
        ):
            err = self.assertRpcError(
                grpc.StatusCode.PERMISSION_DENIED,
                method,
                request,
                metadata=ns_md(self.NAMESPACE, read_only),
                timeout=TIMEOUT,
            )
            self.assertDetailsContain(err, f"'{self.NAMESPACE}'", "write")
        # Nothing was written or deleted.
        got = self.get(key)
        self.assertEqual((got.found, got.value, got.version), (True, value, written.version))


# One concrete TestCase per namespace, e.g. KeyValue_interop_mem.
for _ns, _kind in NAMESPACES:
    _name = "KeyValue_" + "".join(c if c.isalnum() else "_" for c in _ns)
    globals()[_name] = type(
        _name, (KeyValueCases, unittest.TestCase), {"NAMESPACE": _ns, "BACKEND_KIND": _kind}
    )


class Proxy(RpcAssertions, unittest.TestCase):
    """Checks that do not depend on a namespace."""

    def setUp(self):
        self.kv = keyvalue_pb2_grpc.KeyValueStub(channel)
        self.key = f"{RUN_PREFIX}proxy/k"

    def _check_health(self, metadata):
        health = health_pb2_grpc.HealthStub(channel)
        kv_service = keyvalue_pb2.DESCRIPTOR.services_by_name["KeyValue"].full_name
        for service in ("", kv_service):
            resp = health.Check(
                health_pb2.HealthCheckRequest(service=service), metadata=metadata, timeout=TIMEOUT
            )
            self.assertEqual(
                resp.status,
                health_pb2.HealthCheckResponse.SERVING,
                f"health of {service!r} is "
                f"{health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)}",
            )

    def test_health_serving(self):
        self._check_health(auth_md())

    def test_health_needs_no_token(self):
        self._check_health(None)

    def test_missing_namespace_is_invalid_argument(self):
        self.assertRpcError(
            grpc.StatusCode.INVALID_ARGUMENT,
            self.kv.Get,
            keyvalue_pb2.GetRequest(key=self.key),
            metadata=auth_md(),
            timeout=TIMEOUT,
        )
        self.assertRpcError(
            grpc.StatusCode.INVALID_ARGUMENT,
            self.kv.Set,
            keyvalue_pb2.SetRequest(key=self.key, value=b"v"),
            metadata=auth_md(),
            timeout=TIMEOUT,
        )

    def test_unknown_namespace_is_not_found(self):
        unknown = f"interop-unknown-{uuid.uuid4().hex[:8]}"
        # The prefix glob covers the unknown name, so the call gets past authorization to routing.
        token = mint({"interop-*": ALL_PERMISSIONS})
        self.assertRpcError(
            grpc.StatusCode.NOT_FOUND,
            self.kv.Get,
            keyvalue_pb2.GetRequest(key=self.key),
            metadata=ns_md(unknown, token),
            timeout=TIMEOUT,
        )
        self.assertRpcError(
            grpc.StatusCode.NOT_FOUND,
            self.kv.Set,
            keyvalue_pb2.SetRequest(key=self.key, value=b"v"),
            metadata=ns_md(unknown, token),
            timeout=TIMEOUT,
        )

    def test_unknown_namespace_names_no_other_tenant(self):
        unknown = f"interop-unknown-{uuid.uuid4().hex[:8]}"
        err = self.assertRpcError(
            grpc.StatusCode.NOT_FOUND,
            self.kv.Get,
            keyvalue_pb2.GetRequest(key=self.key),
            metadata=ns_md(unknown, mint({"*": ALL_PERMISSIONS})),
            timeout=TIMEOUT,
        )
        self.assertDetailsContain(err, f"'{unknown}'")
        for ns, _ in NAMESPACES:
            self.assertNotIn(ns, err.details(), "the answer lists another tenant")

    def test_reflection_v1alpha_lists_the_services(self):
        # grpcio-reflection's client speaks grpc.reflection.v1alpha, as do Postman and evans.
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        answers = list(stub.ServerReflectionInfo(iter([request]), timeout=TIMEOUT))
        names = {s.name for s in answers[0].list_services_response.service}
        kv_service = keyvalue_pb2.DESCRIPTOR.services_by_name["KeyValue"].full_name
        self.assertIn(kv_service, names)

    def test_oversize_metadata_fails_its_own_call_only(self):
        ns = NAMESPACES[0][0]
        big = (("x-big", "x" * 100_000),)
        err = self.assertRpcError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            self.kv.Get,
            keyvalue_pb2.GetRequest(key=self.key),
            metadata=ns_md(ns) + big,
            timeout=TIMEOUT,
        )
        self.assertDetailsContain(err, "max_header_bytes")
        # The same channel (and connection) still serves.
        self.kv.Get(keyvalue_pb2.GetRequest(key=self.key), metadata=ns_md(ns), timeout=TIMEOUT)

    def test_a_second_message_in_a_unary_call_is_invalid_argument(self):
        # A stream-unary call on a unary method: the client sends two request messages.
        call = channel.stream_unary(
            "/prism.keyvalue.v1.KeyValue/Get",
            request_serializer=keyvalue_pb2.GetRequest.SerializeToString,
            response_deserializer=keyvalue_pb2.GetResponse.FromString,
        )
        two = iter([keyvalue_pb2.GetRequest(key=self.key), keyvalue_pb2.GetRequest(key=self.key)])
        err = self.assertRpcError(
            grpc.StatusCode.INVALID_ARGUMENT,
            call,
            two,
            metadata=ns_md(NAMESPACES[0][0]),
            timeout=TIMEOUT,
        )
        self.assertDetailsContain(err, "exactly one request message")

    def test_unknown_method_is_permission_denied(self):
        call = channel.unary_unary(
            "/prism.keyvalue.v1.KeyValue/Truncate",
            request_serializer=keyvalue_pb2.GetRequest.SerializeToString,
            response_deserializer=keyvalue_pb2.GetResponse.FromString,
        )
        self.assertRpcError(
            grpc.StatusCode.PERMISSION_DENIED,
            call,
            keyvalue_pb2.GetRequest(key=self.key),
            metadata=ns_md(NAMESPACES[0][0]),
            timeout=TIMEOUT,
        )

    def test_unknown_namespace_outside_the_grants_is_permission_denied(self):
        # The default token names the test namespaces exactly: an unknown name is refused before
        # routing, so the caller learns nothing about which namespaces exist.
        unknown = f"interop-unknown-{uuid.uuid4().hex[:8]}"
        err = self.assertRpcError(
            grpc.StatusCode.PERMISSION_DENIED,
            self.kv.Get,
            keyvalue_pb2.GetRequest(key=self.key),
            metadata=ns_md(unknown),
            timeout=TIMEOUT,
        )
        self.assertDetailsContain(err, f"'{unknown}'", "read")

    def test_admin_lists_namespaces(self):
        admin = admin_pb2_grpc.AdminStub(channel)
        listed = admin.ListNamespaces(
            admin_pb2.ListNamespacesRequest(), metadata=auth_md(), timeout=TIMEOUT
        )
        by_name = {n.name: n for n in listed.namespaces}
        for ns, kind in NAMESPACES:
            self.assertIn(ns, by_name)
            self.assertEqual((by_name[ns].pattern, by_name[ns].backend_kind), ("keyvalue", kind))


class Auth(RpcAssertions, unittest.TestCase):
    """Authentication: calls without a valid token are refused with UNAUTHENTICATED."""

    def setUp(self):
        self.kv = keyvalue_pb2_grpc.KeyValueStub(channel)
        self.admin = admin_pb2_grpc.AdminStub(channel)
        self.namespace = NAMESPACES[0][0]
        self.key = f"{RUN_PREFIX}auth/{self._testMethodName}/k"

    def assertUnauthenticated(self, metadata, *detail_parts):
        """Get and Set on a test namespace, and the Admin calls, all fail with UNAUTHENTICATED."""
        calls = (
            (self.kv.Get, keyvalue_pb2.GetRequest(key=self.key), True),
            (self.kv.Set, keyvalue_pb2.SetRequest(key=self.key, value=b"v"), True),
            (
                self.admin.GetCapabilities,
                admin_pb2.GetCapabilitiesRequest(namespace=self.namespace),
                False,
            ),
            (self.admin.ListNamespaces, admin_pb2.ListNamespacesRequest(), False),
        )
        for method, request, addressed in calls:
            md = (((NAMESPACE_HEADER, self.namespace),) if addressed else ()) + tuple(metadata)
            err = self.assertRpcError(
                grpc.StatusCode.UNAUTHENTICATED, method, request, metadata=md, timeout=TIMEOUT
            )
            self.assertDetailsContain(err, *detail_parts)
        # Nothing was written by the refused Set.
        got = self.kv.Get(
            keyvalue_pb2.GetRequest(key=self.key), metadata=ns_md(self.namespace), timeout=TIMEOUT
        )
        self.assertFalse(got.found)

    def test_no_token_is_unauthenticated(self):
        self.assertUnauthenticated((), "missing bearer token")

    def test_non_bearer_authorization_is_unauthenticated(self):
        self.assertUnauthenticated((("authorization", f"Basic {mint()}"),), "missing bearer token")

    def test_expired_token_is_unauthenticated(self):
        # Well past the proxy's clock-skew leeway (5 s by default).
        self.assertUnauthenticated(auth_md(mint(lifetime=-3600)), "expired")

    def test_token_signed_with_another_secret_is_unauthenticated(self):
        other = secrets.token_hex(32).encode()
        self.assertNotEqual(other, SECRET)
        self.assertUnauthenticated(auth_md(mint(secret=other)), "invalid signature")

    def test_wrong_issuer_is_unauthenticated(self):
        if not ISSUER:
            self.fail("PRISM_INTEROP_ISSUER is not set; run.sh configures an issuer")
        self.assertUnauthenticated(auth_md(mint(issuer=ISSUER + "-other")), "issuer")

    def test_token_without_issuer_or_audience_is_unauthenticated(self):
        now = int(time.time())
        grants = {"namespaces": {ns: ALL_PERMISSIONS for ns, _ in NAMESPACES}}
        base = {"sub": "prism-interop-test", "exp": now + 300, "prism": grants}
        for claim, other in (("iss", {"aud": AUDIENCE}), ("aud", {"iss": ISSUER})):
            for claims in ({**base, **other}, {**base, **other, claim: None}):
                # PyJWS signs the payload as given (PyJWT's encode refuses a null `iss`).
                payload = json.dumps(claims).encode()
                token = jwt.PyJWS().encode(payload, SECRET, algorithm="HS256")
                self.assertUnauthenticated(auth_md(token), f"missing required claim `{claim}`")

    def test_wrong_audience_is_unauthenticated(self):
        if not AUDIENCE:
            self.fail("PRISM_INTEROP_AUDIENCE is not set; run.sh configures an audience")
        self.assertUnauthenticated(auth_md(mint(audience=AUDIENCE + "-other")), "audience")


class Messaging(RpcAssertions, unittest.TestCase):
    """PubSub and Queue through the proxy: streams, acks, redelivery, errors."""

    def setUp(self):
        self.pubsub = pubsub_pb2_grpc.PubSubStub(channel)
        self.queue = queue_pb2_grpc.QueueStub(channel)
        self.name = f"{RUN_PREFIX}{self._testMethodName}"
        self.streams = []

    def tearDown(self):
        for s in self.streams:
            s.cancel()

    def open(self, call):
        self.streams.append(call)
        return call

    def test_subscribe_is_confirmed_then_gets_messages_in_order_with_headers(self):
        md = ns_md(PUBSUB_NS)
        sub = self.open(
            self.pubsub.Subscribe(pubsub_pb2.SubscribeRequest(topic=self.name), metadata=md, timeout=TIMEOUT)
        )
        first = next(sub)
        self.assertEqual(first.WhichOneof("event"), "subscribed")
        ids = []
        for i in range(3):
            r = self.pubsub.Publish(
                pubsub_pb2.PublishRequest(topic=self.name, payload=f"m{i}".encode(), headers={"i": str(i)}),
                metadata=md,
                timeout=TIMEOUT,
            )
            ids.append(r.message_id)
        got = [next(sub).message for _ in range(3)]
        self.assertEqual([m.payload for m in got], [b"m0", b"m1", b"m2"])
        self.assertEqual([m.message_id for m in got], ids)
        self.assertEqual([m.headers["i"] for m in got], ["0", "1", "2"])
        self.assertTrue(all(m.published_at_ms > 0 and m.dropped == 0 for m in got))

    def test_a_wildcard_topic_is_invalid_argument(self):
        err = self.assertRpcError(
            grpc.StatusCode.INVALID_ARGUMENT,
            self.pubsub.Publish,
            pubsub_pb2.PublishRequest(topic="orders.>", payload=b"x"),
            metadata=ns_md(PUBSUB_NS),
            timeout=TIMEOUT,
        )
        self.assertDetailsContain(err, "topic")

    def consume(self, md, **kwargs):
        c = self.open(
            self.queue.Consume(queue_pb2.ConsumeRequest(queue=self.name, **kwargs), metadata=md, timeout=TIMEOUT)
        )
        self.assertEqual(next(c).WhichOneof("event"), "consuming")
        return c

    def enqueue(self, md, payload):
        return self.queue.Enqueue(
            queue_pb2.EnqueueRequest(queue=self.name, payload=payload), metadata=md, timeout=TIMEOUT
        ).message_id

    def ack(self, md, *ids):
        return self.queue.Ack(
            queue_pb2.AckRequest(queue=self.name, delivery_ids=list(ids)), metadata=md, timeout=TIMEOUT
        )

    def test_enqueue_consume_ack_and_a_second_ack_is_not_found(self):
        md = ns_md(QUEUE_NS)
        mid = self.enqueue(md, b"job")
        c = self.consume(md, max_in_flight=1)
        d = next(c).delivery
        self.assertEqual((d.message_id, d.payload, d.attempt), (mid, b"job", 1))
        self.assertGreater(d.enqueued_at_ms, 0)
        self.assertEqual(self.ack(md, d.delivery_id).acked, 1)
        err = self.assertRpcError(grpc.StatusCode.NOT_FOUND, self.ack, md, d.delivery_id)
        self.assertDetailsContain(err, d.delivery_id)

    def test_a_nack_redelivers_with_the_next_attempt(self):
        md = ns_md(QUEUE_NS)
        self.enqueue(md, b"retry-me")
        c = self.consume(md, max_in_flight=1)
        d = next(c).delivery
        self.queue.Nack(
            queue_pb2.NackRequest(queue=self.name, delivery_id=d.delivery_id), metadata=md, timeout=TIMEOUT
        )
        again = next(c).delivery
        self.assertEqual((again.message_id, again.attempt), (d.message_id, 2))
        self.assertNotEqual(again.delivery_id, d.delivery_id)
        self.ack(md, again.delivery_id)

    def test_consuming_needs_read_and_enqueueing_needs_write(self):
        read_only = ns_md(QUEUE_NS, mint({QUEUE_NS: ["read"]}))
        self.consume(read_only)
        err = self.assertRpcError(grpc.StatusCode.PERMISSION_DENIED, self.enqueue, read_only, b"x")
        self.assertDetailsContain(err, "write")


def eq_filter(key, value):
    return filter_pb2.Filter(
        compare=filter_pb2.Compare(key=key, op=filter_pb2.Compare.EQ, value=value)
    )


class Composites(RpcAssertions, unittest.TestCase):
    """The composite patterns: a Multicast Registry over a SQLite registry slot and a memstore
    messaging slot, and a Mailbox on SQLite."""

    def setUp(self):
        self.registry = registry_pb2_grpc.MulticastRegistryStub(channel)
        self.mailbox = mailbox_pb2_grpc.MailboxStub(channel)
        self.name = f"{RUN_PREFIX}{self._testMethodName}"
        self.streams = []

    def tearDown(self):
        for s in self.streams:
            s.cancel()

    def register(self, md, identity, **metadata):
        return self.registry.Register(
            registry_pb2.RegisterRequest(
                identity=identity, metadata={"run": self.name, **metadata}, ttl_ms=60_000
            ),
            metadata=md,
            timeout=TIMEOUT,
        )

    def test_register_listen_multicast_and_watch(self):
        md = ns_md(REGISTRY_NS)
        a, b = f"{self.name}/a", f"{self.name}/b"
        mine = eq_filter("run", self.name)
        watch = self.registry.Watch(registry_pb2.WatchRequest(filter=mine), metadata=md, timeout=TIMEOUT)
        self.streams.append(watch)
        synced = next(watch)
        self.assertEqual(synced.kind, registry_pb2.WatchResponse.SYNCED)
        self.register(md, a, zone="eu")
        self.register(md, b, zone="us")
        events = [next(watch) for _ in range(2)]
        self.assertEqual(
            [(e.kind, e.registration.identity) for e in events],
            [(registry_pb2.WatchResponse.REGISTERED, a), (registry_pb2.WatchResponse.REGISTERED, b)],
        )
        listen = self.registry.Listen(registry_pb2.ListenRequest(identity=a), metadata=md, timeout=TIMEOUT)
        self.streams.append(listen)
        self.assertEqual(next(listen).WhichOneof("event"), "listening")
        listed = self.registry.Enumerate(
            registry_pb2.EnumerateRequest(filter=mine), metadata=md, timeout=TIMEOUT
        )
        self.assertEqual([r.identity for r in listed.registrations], [a, b])
        sent = self.registry.Multicast(
            registry_pb2.MulticastRequest(filter=mine, payload=b"hello"), metadata=md, timeout=TIMEOUT
        )
        self.assertEqual((sent.targets, sent.delivered, sent.failed), (2, 1, 1))
        failed = [o for o in sent.outcomes if not o.delivered]
        self.assertEqual([(o.identity, o.reason) for o in failed], [(b, "no live listener")])
        got = next(listen).message
        self.assertEqual((got.payload, got.message_id), (b"hello", sent.message_id))

    def test_register_twice_is_already_exists(self):
        md = ns_md(REGISTRY_NS)
        identity = f"{self.name}/x"
        self.register(md, identity)
        err = self.assertRpcError(grpc.StatusCode.ALREADY_EXISTS, self.register, md, identity)
        self.assertDetailsContain(err, identity)

    def test_mailbox_deliver_query_get_delete(self):
        md = ns_md(MAILBOX_NS)
        box = self.name
        ids = []
        for i, kind in enumerate(["text/plain", "application/json", "application/json"]):
            r = self.mailbox.Deliver(
                mailbox_pb2.DeliverRequest(
                    mailbox=box, payload=f"m{i}".encode(), headers={"content_type": kind, "x-i": str(i)}
                ),
                metadata=md,
                timeout=TIMEOUT,
            )
            ids.append(r.message_id)
        page = self.mailbox.Query(
            mailbox_pb2.QueryRequest(mailbox=box, filter=eq_filter("content_type", "application/json")),
            metadata=md,
            timeout=TIMEOUT,
        )
        self.assertEqual([m.payload for m in page.messages], [b"m2", b"m1"])
        self.assertEqual(page.messages[0].headers["principal"], "prism-interop-test")
        got = self.mailbox.Get(
            mailbox_pb2.GetRequest(mailbox=box, message_id=ids[0]), metadata=md, timeout=TIMEOUT
        ).message
        self.assertEqual((got.payload, got.headers["x-i"]), (b"m0", "0"))
        deleted = self.mailbox.Delete(
            mailbox_pb2.DeleteRequest(mailbox=box, message_ids=[ids[0], "never-was"]),
            metadata=md,
            timeout=TIMEOUT,
        )
        self.assertEqual(deleted.deleted, 1)
        err = self.assertRpcError(
            grpc.StatusCode.NOT_FOUND,
            self.mailbox.Get,
            mailbox_pb2.GetRequest(mailbox=box, message_id=ids[0]),
            metadata=md,
            timeout=TIMEOUT,
        )
        self.assertDetailsContain(err, ids[0])

    def test_a_mailbox_header_it_does_not_know_is_invalid_argument(self):
        err = self.assertRpcError(
            grpc.StatusCode.INVALID_ARGUMENT,
            self.mailbox.Deliver,
            mailbox_pb2.DeliverRequest(mailbox=self.name, payload=b"x", headers={"color": "red"}),
            metadata=ns_md(MAILBOX_NS),
            timeout=TIMEOUT,
        )
        self.assertDetailsContain(err, "headers.color")


class Operability(RpcAssertions, unittest.TestCase):
    """The admin listener read as Prometheus's own Python parsers read it, and a config reload
    through the Admin stubs."""

    def setUp(self):
        if not ADMIN:
            self.fail("PRISM_INTEROP_ADMIN is not set (run ci/interop/run.sh)")
        kv = keyvalue_pb2_grpc.KeyValueStub(channel)
        kv.Get(keyvalue_pb2.GetRequest(key=f"{RUN_PREFIX}metrics/k"), metadata=ns_md(NAMESPACES[0][0]), timeout=TIMEOUT)

    def _get(self, path, accept=None):
        import urllib.request

        request = urllib.request.Request(f"http://{ADMIN}{path}")
        if accept:
            request.add_header("Accept", accept)
        with urllib.request.urlopen(request, timeout=TIMEOUT) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()

    def _families(self, parse, text):
        return {f.name: f for f in parse(text)}

    def test_prometheus_text_parses_and_counts_the_call(self):
        from prometheus_client.parser import text_string_to_metric_families

        status, content_type, text = self._get("/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(content_type.startswith("text/plain; version=0.0.4"), content_type)
        families = self._families(text_string_to_metric_families, text)
        calls = families["rpc_server_call_duration_seconds"]
        self.assertEqual(calls.type, "histogram")
        counted = [
            s for s in calls.samples
            if s.name.endswith("_count")
            and s.labels.get("namespace") == NAMESPACES[0][0]
            and s.labels.get("rpc_method") == "prism.keyvalue.v1.KeyValue/Get"
            and s.labels.get("rpc_status_code") == "OK"
        ]
        self.assertEqual(len(counted), 1, counted)
        self.assertGreaterEqual(counted[0].value, 1)
        for name in ("prism_backend_up", "prism_messages_sent", "prism_auth_failures", "process_resident_memory_bytes"):
            self.assertIn(name, families)

    def test_openmetrics_parses_strictly(self):
        from prometheus_client.openmetrics.parser import text_string_to_metric_families

        status, content_type, text = self._get("/metrics", accept="application/openmetrics-text; version=1.0.0")
        self.assertEqual(status, 200)
        self.assertTrue(content_type.startswith("application/openmetrics-text"), content_type)
        families = self._families(text_string_to_metric_families, text)
        self.assertEqual(families["rpc_server_call_duration_seconds"].unit, "seconds")
        self.assertEqual(families["prism_messages_sent"].type, "counter")

    def test_probes(self):
        self.assertEqual(self._get("/livez")[0], 200)
        self.assertEqual(self._get("/readyz")[2], "ready\n")

    def test_reload_config_through_the_admin_stubs(self):
        admin = admin_pb2_grpc.AdminStub(channel)
        before = admin.ListNamespaces(admin_pb2.ListNamespacesRequest(), metadata=auth_md(), timeout=TIMEOUT)
        done = admin.ReloadConfig(admin_pb2.ReloadConfigRequest(), metadata=auth_md(), timeout=TIMEOUT)
        self.assertEqual(done.config_generation, before.config_generation + 1)
        self.assertEqual(list(done.namespaces_added) + list(done.namespaces_removed) + list(done.namespaces_changed), [])
        self.assertRpcError(
            grpc.StatusCode.UNAUTHENTICATED,
            admin.ReloadConfig,
            admin_pb2.ReloadConfigRequest(),
            timeout=TIMEOUT,
        )


class CountingResult(unittest.TextTestResult):
    passed = 0

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1


def main():
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2, resultclass=CountingResult)
    print(f"interop: target {TARGET}, namespaces {', '.join(ns for ns, _ in NAMESPACES)}")
    result = runner.run(suite)
    failed = (
        len(result.failures)
        + len(result.errors)
        + len(result.unexpectedSuccesses)
        + len(result.skipped)  # nothing here is ever skipped; treat a skip as a failure
    )
    sys.stdout.flush()
    print(f"interop: {result.passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 and result.passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
