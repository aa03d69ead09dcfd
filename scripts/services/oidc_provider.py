#!/usr/bin/env python3
"""A real OpenID provider for the tests of crates/oidc, on loopback only.

Built on IdentityPython's idpyoidc (the OP half of the library: discovery,
JWKS, authorization with a username/password form, token with PKCE and
refresh, userinfo), wrapped in a small Flask app. Started by
scripts/services/oidc.sh; users, passwords and clients are the JSON files in
scripts/services/oidc/.

Test-only choices, each deliberate:
- PKCE is essential and S256 is the only method accepted.
- A client may set "id_token_lifetime" (seconds, may be negative) so a test
  can obtain an already-expired ID token from the real provider.
- POST /test/rotate-signing-keys publishes and starts using new signing
  keys (the old ones stay published), for the JWKS refresh test.
- Every request runs under one lock: idpyoidc's in-memory session store is
  not meant for concurrent mutation, and the test suite runs in parallel.
"""

import argparse
import json
import logging
import os
import sys
import threading
from urllib.parse import urlparse

from cryptojwt.key_bundle import build_key_bundle
from flask import Flask, Response, make_response, redirect, request
from idpyoidc.message.oauth2 import ResponseMessage
from idpyoidc.message.oidc import AccessTokenRequest, AuthorizationRequest
from idpyoidc.server import Server
from idpyoidc.server.exception import FailedAuthentication
from idpyoidc.server.oidc.token import Token
from idpyoidc.server.scopes import SCOPE2CLAIMS
from idpyoidc.server.token.id_token import IDToken

HERE = os.path.dirname(os.path.realpath(__file__))
CONF_DIR = os.path.join(HERE, "oidc")
LOCK = threading.Lock()
SIGNING_KEY_DEFS = [
    {"type": "RSA", "use": ["sig"]},
    {"type": "EC", "crv": "P-256", "use": ["sig"]},
]
log = logging.getLogger("oidc_provider")


class PerClientLifetimeIDToken(IDToken):
    """IDToken whose lifetime a client entry may override ("id_token_lifetime")."""

    def sign_encrypt(self, session_id, client_id, *args, lifetime=None, **kwargs):
        client = self.upstream_get("context").cdb.get(client_id, {})
        if "id_token_lifetime" in client:
            lifetime = int(client["id_token_lifetime"])
        return super().sign_encrypt(session_id, client_id, *args, lifetime=lifetime, **kwargs)


def load_json(name):
    with open(os.path.join(CONF_DIR, name), encoding="utf-8") as f:
        return json.load(f)


def op_config(issuer, state_dir):
    scopes_to_claims = dict(SCOPE2CLAIMS)
    scopes_to_claims["groups"] = ["groups"]
    scopes_to_claims["ci"] = ["repository", "ref", "workflow"]
    # Claims released in the ID token and at userinfo: by scope.
    release = {"add_claims_by_scope": True}
    return {
        "issuer": issuer,
        "base_url": issuer,
        "httpc_params": {"verify": False, "timeout": 4},
        "key_conf": {
            "private_path": os.path.join(state_dir, "jwks.json"),
            "key_defs": SIGNING_KEY_DEFS,
            "read_only": False,
            # Published as jwks_uri (discovery) rather than inline.
            "uri_path": "jwks",
        },
        "template_dir": os.path.join(CONF_DIR, "templates"),
        "scopes_to_claims": scopes_to_claims,
        "preference": {
            "subject_types_supported": ["public"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "scopes_supported": sorted(scopes_to_claims),
        },
        "add_on": {
            "pkce": {
                "function": "idpyoidc.server.oauth2.add_on.pkce.add_support",
                # Only S256; a request without a code_challenge is refused.
                "kwargs": {"essential": True, "code_challenge_methods": {"S256": None}},
            },
        },
        "authz": {
            "class": "idpyoidc.server.authz.AuthzHandling",
            "kwargs": {
                "grant_config": {
                    "usage_rules": {
                        "authorization_code": {
                            "supports_minting": ["access_token", "refresh_token", "id_token"],
                            "max_usage": 1,
                            "expires_in": 120,
                        },
                        "access_token": {"expires_in": 600},
                        "refresh_token": {
                            "supports_minting": ["access_token", "refresh_token", "id_token"],
                            "expires_in": 3600,
                        },
                    },
                    "expires_in": 3600,
                }
            },
        },
        "authentication": {
            "user": {
                "acr": "urn:oasis:names:tc:SAML:2.0:ac:classes:InternetProtocolPassword",
                "class": "idpyoidc.server.user_authn.user.UserPassJinja2",
                "kwargs": {
                    "verify_endpoint": "/verify/user",
                    "template": "login.jinja2",
                    "db": {
                        "class": "idpyoidc.server.util.JSONDictDB",
                        "kwargs": {"filename": os.path.join(CONF_DIR, "passwd.json")},
                    },
                    "page_header": "Berth test provider",
                    "user_label": "Username",
                    "passwd_label": "Password",
                    "submit_btn": "Log in",
                },
            }
        },
        "cookie_handler": {
            "class": "idpyoidc.server.cookie_handler.CookieHandler",
            "kwargs": {
                "keys": {
                    "private_path": os.path.join(state_dir, "cookie_jwks.json"),
                    "key_defs": [
                        {"type": "OCT", "use": ["enc"], "kid": "enc"},
                        {"type": "OCT", "use": ["sig"], "kid": "sig"},
                    ],
                    "read_only": False,
                },
                "name": {
                    "session": "oidc_op",
                    "register": "oidc_op_rp",
                    "session_management": "sman",
                },
            },
        },
        "endpoint": {
            "provider_info": {
                "path": ".well-known/openid-configuration",
                "class": "idpyoidc.server.oidc.provider_config.ProviderConfiguration",
                "kwargs": {"client_authn_method": None},
            },
            "authorization": {
                "path": "authorization",
                "class": "idpyoidc.server.oidc.authorization.Authorization",
                "kwargs": {
                    "client_authn_method": None,
                    "claims_parameter_supported": True,
                    "request_parameter_supported": False,
                    "response_types_supported": ["code"],
                    "response_modes_supported": ["query"],
                },
            },
            "token": {
                "path": "token",
                "class": "idpyoidc.server.oidc.token.Token",
                "kwargs": {"client_authn_method": ["client_secret_basic", "client_secret_post"]},
            },
            "userinfo": {
                "path": "userinfo",
                "class": "idpyoidc.server.oidc.userinfo.UserInfo",
                "kwargs": dict(release),
            },
        },
        "token_handler_args": {
            "jwks_def": {
                "private_path": os.path.join(state_dir, "token_jwks.json"),
                "read_only": False,
                "key_defs": [{"type": "oct", "bytes": "24", "use": ["enc"], "kid": "code"}],
            },
            "code": {"kwargs": {"lifetime": 120}},
            "token": {
                "class": "idpyoidc.server.token.jwt_token.JWTToken",
                "kwargs": {"lifetime": 600, "aud": [issuer]},
            },
            "refresh": {
                "class": "idpyoidc.server.token.jwt_token.JWTToken",
                "kwargs": {"lifetime": 3600, "aud": [issuer]},
            },
            "id_token": {
                # By name: idpyoidc imports it (this file is on sys.path as the script).
                "class": "oidc_provider.PerClientLifetimeIDToken",
                "kwargs": dict(release, lifetime=300),
            },
        },
        "userinfo": {
            "class": "idpyoidc.server.user_info.UserInfo",
            "kwargs": {"db_file": os.path.join(CONF_DIR, "users.json")},
        },
        "session_params": {
            "encrypter": {
                "kwargs": {
                    "keys": {
                        "key_defs": [
                            {"type": "OCT", "use": ["enc"], "kid": "password"},
                            {"type": "OCT", "use": ["enc"], "kid": "salt"},
                        ]
                    }
                }
            },
            "sub_func": {
                "public": {
                    "class": "idpyoidc.server.session.manager.PublicID",
                    "kwargs": {"salt": "berth-test"},
                }
            },
        },
    }


def client_db():
    cdb = {}
    for client_id, spec in load_json("clients.json").items():
        entry = {
            "client_id": client_id,
            "client_secret": spec["client_secret"],
            "client_salt": "salt-" + client_id,
            "redirect_uris": [(uri, {}) for uri in spec["redirect_uris"]],
            "response_types_supported": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
            "allowed_scopes": spec["allowed_scopes"],
            "grant_types_supported": spec["grant_types_supported"],
            "pkce_essential": True,
        }
        if "id_token_lifetime" in spec:
            entry["id_token_lifetime"] = spec["id_token_lifetime"]
        cdb[client_id] = entry
    return cdb


def build_server(issuer, state_dir):
    server = Server(op_config(issuer, state_dir), cwd=state_dir)
    server.context.cdb = client_db()
    return server


def create_app(issuer, state_dir):
    app = Flask("berth-test-oidc")
    server = build_server(issuer, state_dir)
    jwks_path = urlparse(server.context.provider_info.get("jwks_uri", issuer + "/jwks")).path

    def http_info():
        return {
            "headers": {k: v for k, v in request.headers.items(lower=True) if k != "cookie"},
            "method": request.method,
            "url": request.url,
            "cookie": [{"name": k, "value": v} for k, v in request.cookies.items()],
        }

    def json_error(error, description, status=400):
        msg = ResponseMessage(error=error, error_description=description)
        resp = make_response(msg.to_json(), status)
        resp.headers["Content-Type"] = "application/json"
        return resp

    def do_response(endpoint, req_args, error="", **args):
        info = endpoint.do_response(request=req_args, error=error, **args)
        placement = info.get("response_placement", endpoint.response_placement)
        if placement == "body":
            resp = make_response(info["response"], info.get("response_code", 400 if error else 200))
        else:
            resp = redirect(info["response"])
        for key, value in info["http_headers"]:
            resp.headers[key] = value
        cookies = info.get("cookie")
        if isinstance(cookies, dict):
            cookies = [cookies]
        for spec in cookies or []:
            kwargs = {k: v for k, v in spec.items() if k != "name"}
            kwargs["path"] = "/"
            kwargs["samesite"] = "Lax"
            resp.set_cookie(spec["name"], **kwargs)
        return resp

    def service(name):
        endpoint = server.get_endpoint(name)
        info = http_info()
        if request.method == "GET":
            raw = request.args.to_dict()
        else:
            raw = request.form.to_dict() if request.form else request.get_data(as_text=True)
        try:
            req_args = endpoint.parse_request(raw, http_info=info)
        except Exception as err:  # the library signals bad input by raising
            log.info("%s: bad request: %s", name, err)
            status = 401 if "uthentication" in type(err).__name__ else 400
            return json_error("invalid_request", str(err), status)
        if isinstance(req_args, ResponseMessage) and "error" in req_args:
            status = 401 if req_args["error"] in ("invalid_client", "invalid_token") else 400
            resp = make_response(req_args.to_json(), status)
            resp.headers["Content-Type"] = "application/json"
            return resp
        try:
            if isinstance(endpoint, Token):
                args = endpoint.process_request(AccessTokenRequest(**req_args), http_info=info)
            else:
                args = endpoint.process_request(req_args, http_info=info)
        except Exception as err:
            log.exception("%s: processing failed", name)
            return json_error("invalid_request", str(err))
        if isinstance(args, ResponseMessage) and "error" in args:
            resp = make_response(args.to_json(), 400)
            resp.headers["Content-Type"] = "application/json"
            return resp
        if "redirect_location" in args:
            return redirect(args["redirect_location"])
        if "http_response" in args:
            return make_response(args["http_response"], 200)
        if "error" in args.get("response_args", {}):
            return do_response(endpoint, req_args, error=args["response_args"]["error"], **args)
        return do_response(endpoint, req_args, **args)

    @app.route("/.well-known/openid-configuration")
    def discovery():
        with LOCK:
            return service("provider_config")

    @app.route(jwks_path)
    def jwks():
        with LOCK:
            resp = make_response(json.dumps(server.context.keyjar.export_jwks()), 200)
        resp.headers["Content-Type"] = "application/json"
        return resp

    @app.route("/authorization")
    def authorization():
        with LOCK:
            return service("authorization")

    @app.route("/verify/user", methods=["POST"])
    def verify_user():
        with LOCK:
            context = server.get_context()
            method = context.authn_broker.get_method_by_id("user")
            form = request.form.to_dict()
            try:
                username = method.verify(**form)
            except (FailedAuthentication, KeyError):
                return make_response("Authentication failed", 403)
            try:
                auth_args = method.unpack_token(form["token"])
            except Exception:
                return make_response("Bad login form token", 400)
            authz_request = AuthorizationRequest().from_urlencoded(auth_args["query"])
            endpoint = server.get_endpoint("authorization")
            session_id = endpoint.create_session(
                authz_request, username, auth_args["authn_class_ref"], auth_args["iat"], method
            )
            args = endpoint.authz_part2(request=authz_request, session_id=session_id)
            if isinstance(args, ResponseMessage) and "error" in args:
                return json_error(args["error"], args.get("error_description", ""))
            return do_response(endpoint, request, **args)

    @app.route("/token", methods=["POST"])
    def token():
        with LOCK:
            return service("token")

    @app.route("/userinfo", methods=["GET", "POST"])
    def userinfo():
        with LOCK:
            return service("userinfo")

    @app.route("/test/rotate-signing-keys", methods=["POST"])
    def rotate_signing_keys():
        """Publishes new signing keys and signs with them from now on. The
        old keys stay published, as in a real rotation, so tokens already
        issued still verify; relying parties meet an unknown kid."""
        with LOCK:
            keyjar = server.context.keyjar
            bundle = build_key_bundle(SIGNING_KEY_DEFS)
            for owner in keyjar.owners():
                keys = keyjar[owner]
                keys._bundles.insert(0, bundle)  # pack_key signs with the first key
                keyjar[owner] = keys
            kids = [key.kid for key in bundle.keys()]
        log.info("signing keys rotated; new kids %s", kids)
        return Response(json.dumps({"kids": kids}), mimetype="application/json")

    @app.route("/healthz")
    def healthz():
        return Response("ok", mimetype="text/plain")

    return app


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--state-dir", required=True, help="keys are kept here")
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("oidc_provider: loopback only")
    os.makedirs(args.state_dir, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    issuer = f"http://{args.host}:{args.port}"
    app = create_app(issuer, os.path.abspath(args.state_dir))
    app.run(host=args.host, port=args.port, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
