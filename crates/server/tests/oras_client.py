#!/usr/bin/env python3
"""The Python ORAS client (PyPI `oras`) against a running berth registry.

Usage: BERTH_TEST_USERNAME=... BERTH_TEST_PASSWORD=... oras_client.py HOST:PORT REPOSITORY WORKDIR

Logs in with the credentials from the environment (the ORAS client then
fetches bearer tokens from the registry's token endpoint; the plain HTTP
cross-checks send Basic credentials), pushes artifacts (monolithic and chunked uploads), pulls them back byte for
byte, attaches referrers with a `subject`, and checks the referrers API with
and without the artifactType filter. Any mismatch raises, so the exit status
is non-zero; on success the last line is `ORAS-OK {json summary}`.
"""

import hashlib
import json
import os
import sys

import oras.client
import oras.defaults
import oras.oci
import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

ARTIFACT_TYPE = "application/vnd.berth.test.bundle.v1"
CONFIG_TYPE = "application/vnd.berth.test.config.v1+json"
SBOM_TYPE = "application/vnd.berth.test.sbom.v1+json"
SIG_TYPE = "application/vnd.berth.test.signature.v1"


class Mismatch(AssertionError):
    pass


def check(cond, what):
    if not cond:
        raise Mismatch(what)
    print(f"ok: {what}", flush=True)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write(path: str, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return path


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# Plain HTTP cross-checks, with Basic credentials (set in main).
http = requests.Session()


def get_manifest_raw(base: str, repo: str, ref: str):
    r = http.get(
        f"{base}/v2/{repo}/manifests/{ref}",
        headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"},
        timeout=60,
    )
    detail = "" if r.status_code == 200 else f": {r.text[:300]}"
    check(r.status_code == 200, f"GET manifest {repo}:{ref} -> 200 (got {r.status_code}{detail})")
    return r


def push_with_artifact_type(client, target, repo, files, artifact_type, subject=None, annotations=None, do_chunked=False):
    """OCI 1.1 artifact: empty config, `artifactType` set, optional subject,
    uploaded blob by blob with the client's own upload code."""
    container = client.get_container(target)
    empty = write(os.path.join(WORK, "empty.json"), b"{}")
    config = {"mediaType": EMPTY_MEDIA_TYPE, "digest": EMPTY_DIGEST, "size": 2}
    r = client.upload_blob(empty, container, config)
    check(r.status_code in (200, 201), f"upload empty config blob -> {r.status_code}")
    layers = []
    for path, media_type in files:
        layer = oras.oci.NewLayer(path, media_type=media_type)
        layer["annotations"] = {oras.defaults.annotation_title: os.path.basename(path)}
        r = client.upload_blob(path, container, layer, do_chunked=do_chunked, chunk_size=1024 * 1024)
        check(r.status_code in (200, 201), f"upload {os.path.basename(path)} (chunked={do_chunked}) -> {r.status_code}")
        layers.append(layer)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": config,
        "layers": layers,
    }
    if annotations:
        manifest["annotations"] = annotations
    if subject is not None:
        manifest["subject"] = {"mediaType": subject.mediaType, "digest": subject.digest, "size": subject.size}
    r = client.upload_manifest(manifest, container)
    detail = "" if r.status_code == 201 else f": {r.text[:300]}"
    check(r.status_code == 201, f"PUT manifest {target} -> 201 (got {r.status_code}{detail})")
    return r


def main():
    global WORK
    addr, repo, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
    base = f"http://{addr}"
    os.makedirs(WORK, exist_ok=True)
    os.chdir(WORK)  # oras validates that pushed files are under the cwd
    username, password = os.environ["BERTH_TEST_USERNAME"], os.environ["BERTH_TEST_PASSWORD"]
    http.auth = (username, password)

    # Without credentials the registry answers 401 with a Bearer challenge
    # naming its token endpoint.
    r = requests.get(f"{base}/v2/{repo}/tags/list", timeout=60)
    challenge = r.headers.get("WWW-Authenticate", "")
    check(r.status_code == 401, f"anonymous tags list -> 401 (got {r.status_code})")
    check(
        challenge.startswith(f'Bearer realm="{base}/service/token"'),
        f"401 carries a Bearer challenge with the token endpoint ({challenge!r})",
    )

    client = oras.client.OrasClient(hostname=addr, insecure=True)
    # oras-py's login records the credentials in a Docker config file (a
    # private one here, not the user's) and uses them for token requests.
    docker_config = os.path.join(WORK, "docker-config.json")
    login = client.login(username=username, password=password, hostname=addr, config_path=docker_config)
    check(login.get("Status") == "Login Succeeded", f"oras login ({login})")
    summary = {}

    # -- 1. monolithic push with the high-level API (artifact type from the
    # config media type), pull back byte-identical.
    small = write("notes.txt", b"berth oras test\n" + os.urandom(64).hex().encode())
    cfg = write("config.json", json.dumps({"berth": "oras", "nonce": os.urandom(8).hex()}).encode())
    os.makedirs("docs/sub", exist_ok=True)
    doc_a = write("docs/readme.md", b"# berth\n" + os.urandom(16).hex().encode())
    doc_b = write("docs/sub/data.bin", os.urandom(4096))
    res = client.push(
        target=f"{addr}/{repo}:mono",
        files=[f"{small}:text/plain", "docs"],
        manifest_config=f"{cfg}:{CONFIG_TYPE}",
        manifest_annotations={"org.opencontainers.image.title": "mono"},
    )
    check(res.status_code == 201, f"push mono -> 201 (got {res.status_code})")
    check(client.auth.token is not None, "the client pushed with a bearer token from the token endpoint")
    mono_digest = res.headers.get("Docker-Content-Digest", "")
    check(mono_digest.startswith("sha256:"), f"push mono returns Docker-Content-Digest ({mono_digest!r})")
    check(
        res.headers.get("Location", "") != "",
        "push mono returns a Location header",
    )
    raw = get_manifest_raw(base, repo, "mono")
    check(sha256(raw.content) == mono_digest, "mono manifest bytes hash to the pushed digest")
    check(raw.headers.get("Content-Type") == OCI_MANIFEST, f"mono Content-Type is OCI manifest ({raw.headers.get('Content-Type')})")
    mono = raw.json()
    check(mono["config"]["mediaType"] == CONFIG_TYPE, "mono config media type kept")
    out = os.path.join(WORK, "pull-mono")
    pulled = client.pull(target=f"{addr}/{repo}:mono", outdir=out)
    check(sorted(os.path.basename(p) for p in pulled) == ["docs", "notes.txt"], f"pull mono gives the file and the directory ({pulled})")
    check(read(os.path.join(out, "notes.txt")) == read(small), "pulled mono file is byte-identical")
    check(read(os.path.join(out, "docs/readme.md")) == read(doc_a), "pulled directory file 1 is byte-identical")
    check(read(os.path.join(out, "docs/sub/data.bin")) == read(doc_b), "pulled directory file 2 is byte-identical")
    check(len(mono["layers"]) == 2 and mono["layers"][1]["mediaType"] == oras.defaults.default_blob_dir_media_type, "directory stored as a tar+gzip layer")
    r = http.get(f"{base}/v2/{repo}/blobs/{mono['config']['digest']}", timeout=60)
    check(r.status_code == 200 and r.content == read(cfg), "config blob byte-identical")
    summary["mono"] = mono_digest

    # -- 2. chunked push of a few MiB (several PATCHes, the last one short).
    big = write("big.bin", os.urandom(3 * 1024 * 1024 + 12345))
    res = client.push(
        target=f"{addr}/{repo}:chunked",
        files=[f"big.bin:application/vnd.berth.test.blob"],
        manifest_config=f"{cfg}:{CONFIG_TYPE}",
        do_chunked=True,
        chunk_size=1024 * 1024,
    )
    check(res.status_code == 201, f"push chunked -> 201 (got {res.status_code})")
    chunked_digest = res.headers.get("Docker-Content-Digest", "")
    out = os.path.join(WORK, "pull-chunked")
    pulled = client.pull(target=f"{addr}/{repo}:chunked", outdir=out)
    check(len(pulled) == 1 and read(pulled[0]) == read(big), "pulled chunked blob is byte-identical")
    big_digest = sha256(read(big))
    h = http.head(f"{base}/v2/{repo}/blobs/{big_digest}", timeout=60)
    check(h.status_code == 200, f"HEAD big blob -> 200 ({h.status_code})")
    check(h.headers.get("Content-Length") == str(len(read(big))), f"HEAD big blob Content-Length ({h.headers.get('Content-Length')})")
    check(h.headers.get("Docker-Content-Digest") == big_digest, "HEAD big blob Docker-Content-Digest")
    summary["chunked"] = chunked_digest

    # -- 3. an OCI 1.1 artifact with artifactType, chunked, several files.
    f1 = write("a.txt", b"alpha " + os.urandom(32).hex().encode())
    f2 = write("b.bin", os.urandom(2 * 1024 * 1024 + 7))
    res = push_with_artifact_type(
        client,
        f"{addr}/{repo}:bundle",
        repo,
        [(f1, "text/plain"), (f2, "application/octet-stream")],
        ARTIFACT_TYPE,
        do_chunked=True,
    )
    bundle_digest = res.headers.get("Docker-Content-Digest", "")
    raw = get_manifest_raw(base, repo, "bundle")
    check(sha256(raw.content) == bundle_digest, "bundle manifest digest matches")
    bundle = raw.json()
    check(bundle.get("artifactType") == ARTIFACT_TYPE, "bundle artifactType stored")
    out = os.path.join(WORK, "pull-bundle")
    pulled = sorted(client.pull(target=f"{addr}/{repo}:bundle", outdir=out))
    check([os.path.basename(p) for p in pulled] == ["a.txt", "b.bin"], f"bundle pulls both files ({pulled})")
    check(read(pulled[0]) == read(f1) and read(pulled[1]) == read(f2), "bundle files byte-identical")
    summary["bundle"] = bundle_digest

    # -- 4. referrers: an SBOM (artifactType field) and a signature (artifact
    # type from the config media type) pointing at the mono artifact.
    subject = oras.oci.Subject(mediaType=OCI_MANIFEST, digest=mono_digest, size=len(get_manifest_raw(base, repo, "mono").content))
    sbom = write("sbom.json", json.dumps({"spdxVersion": "SPDX-2.3", "nonce": os.urandom(8).hex()}).encode())
    res = push_with_artifact_type(
        client,
        f"{addr}/{repo}:sbom",
        repo,
        [(sbom, "application/spdx+json")],
        SBOM_TYPE,
        subject=subject,
        annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z", "org.berth.kind": "sbom"},
    )
    sbom_digest = res.headers.get("Docker-Content-Digest", "")
    check(
        res.headers.get("OCI-Subject") == mono_digest,
        f"PUT of a manifest with a subject answers OCI-Subject: {mono_digest} (got {res.headers.get('OCI-Subject')!r})",
    )
    sig = write("sig.bin", os.urandom(256))
    res = client.push(
        target=f"{addr}/{repo}:sig",
        files=[f"sig.bin:application/vnd.berth.test.sig"],
        manifest_config=f"{cfg}:{SIG_TYPE}",
        subject=subject,
    )
    check(res.status_code == 201, f"push signature referrer -> 201 (got {res.status_code})")
    sig_digest = res.headers.get("Docker-Content-Digest", "")
    check(res.headers.get("OCI-Subject") == mono_digest, "signature PUT answers OCI-Subject")
    sig_size = len(get_manifest_raw(base, repo, "sig").content)

    r = http.get(f"{base}/v2/{repo}/referrers/{mono_digest}", timeout=60)
    check(r.status_code == 200, f"GET referrers -> 200 (got {r.status_code} {r.text[:300]})")
    check(
        r.headers.get("Content-Type", "").startswith(OCI_INDEX),
        f"referrers Content-Type is the OCI index ({r.headers.get('Content-Type')})",
    )
    idx = r.json()
    check(idx.get("schemaVersion") == 2 and idx.get("mediaType") == OCI_INDEX, f"referrers response is an OCI index ({idx})")
    by_digest = {d["digest"]: d for d in idx.get("manifests", [])}
    check(set(by_digest) == {sbom_digest, sig_digest}, f"referrers lists exactly the SBOM and the signature ({list(by_digest)})")
    s = by_digest[sbom_digest]
    check(s.get("mediaType") == OCI_MANIFEST, "SBOM descriptor mediaType")
    check(s.get("artifactType") == SBOM_TYPE, f"SBOM descriptor artifactType ({s.get('artifactType')})")
    check(s.get("size") == len(get_manifest_raw(base, repo, sbom_digest).content), "SBOM descriptor size")
    check(
        (s.get("annotations") or {}).get("org.berth.kind") == "sbom",
        f"SBOM descriptor carries the manifest annotations ({s.get('annotations')})",
    )
    g = by_digest[sig_digest]
    check(g.get("artifactType") == SIG_TYPE, f"signature artifactType falls back to config.mediaType ({g.get('artifactType')})")
    check(g.get("size") == sig_size, "signature descriptor size")
    check("OCI-Filters-Applied" not in r.headers, "no OCI-Filters-Applied without a filter")

    # The filter.
    r = http.get(f"{base}/v2/{repo}/referrers/{mono_digest}", params={"artifactType": SBOM_TYPE}, timeout=60)
    check(r.status_code == 200, f"GET referrers?artifactType -> 200 ({r.status_code})")
    check(
        r.headers.get("OCI-Filters-Applied") == "artifactType",
        f"OCI-Filters-Applied: artifactType (got {r.headers.get('OCI-Filters-Applied')!r})",
    )
    filtered = [d["digest"] for d in r.json().get("manifests", [])]
    check(filtered == [sbom_digest], f"filter keeps only the SBOM ({filtered})")
    r = http.get(f"{base}/v2/{repo}/referrers/{mono_digest}", params={"artifactType": "application/x-none"}, timeout=60)
    check(r.status_code == 200 and r.json().get("manifests") == [], f"filter with no match -> empty list ({r.text[:200]})")

    # A digest nobody refers to: 200 with an empty index.
    r = http.get(f"{base}/v2/{repo}/referrers/{chunked_digest}", timeout=60)
    check(r.status_code == 200, f"referrers of an unreferenced manifest -> 200 ({r.status_code})")
    check(r.json().get("manifests") == [], "referrers of an unreferenced manifest is empty")
    r = http.get(f"{base}/v2/{repo}/referrers/{sha256(os.urandom(16))}", timeout=60)
    check(r.status_code == 200 and r.json().get("manifests") == [], f"referrers of an unknown digest -> 200 empty ({r.status_code})")

    # The referrer itself is a normal manifest and pulls back intact.
    out = os.path.join(WORK, "pull-sbom")
    pulled = client.pull(target=f"{addr}/{repo}:sbom", outdir=out)
    check(len(pulled) == 1 and read(pulled[0]) == read(sbom), "pulled SBOM is byte-identical")
    check(get_manifest_raw(base, repo, "sbom").json()["subject"]["digest"] == mono_digest, "SBOM manifest keeps its subject")

    # Tags as the client sees them.
    tags = sorted(client.get_tags(f"{addr}/{repo}"))
    check(tags == ["bundle", "chunked", "mono", "sbom", "sig"], f"tags ({tags})")

    # Deleting a referrer (the client resolves the tag and deletes by
    # digest) removes it from the referrers list. oras-py's token backend
    # keeps the first token it got and, on a 401 insufficient_scope, retries
    # with that same token instead of asking for the `delete` scope; its
    # basic backend (Basic credentials on every request) can delete.
    deleter = oras.client.OrasClient(hostname=addr, insecure=True, auth_backend="basic")
    deleter.login(username=username, password=password, hostname=addr, config_path=docker_config)
    check(deleter.delete_tag(f"{addr}/{repo}", "sig") is True, "delete_tag sig")
    r = http.get(f"{base}/v2/{repo}/manifests/{sig_digest}", headers={"Accept": OCI_MANIFEST}, timeout=60)
    check(r.status_code == 404, f"deleted signature manifest -> 404 ({r.status_code})")
    r = http.get(f"{base}/v2/{repo}/referrers/{mono_digest}", timeout=60)
    left = [d["digest"] for d in r.json().get("manifests", [])]
    check(r.status_code == 200 and left == [sbom_digest], f"referrers after deleting the signature ({left})")
    tags = sorted(client.get_tags(f"{addr}/{repo}"))
    check(tags == ["bundle", "chunked", "mono", "sbom"], f"tags after delete ({tags})")

    client.logout(addr)
    deleter.logout(addr)
    summary.update({"sbom": sbom_digest, "sig": sig_digest, "referrers": 1})
    print("ORAS-OK " + json.dumps(summary, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
