"""A local stand-in for the Hugging Face Hub (a real HTTP server on 127.0.0.1, a thread of the test).

It serves the requests huggingface_hub's `create_repo` + `upload_folder` make when hf_xet is off (HF_HUB_DISABLE_XET=1;
the Xet transfer protocol has no stand-in here):
- `POST /api/repos/create`: a new repo (409 when it exists, which `exist_ok=True` accepts);
- `POST /api/models/<repo>/preupload/<rev>`: each file's upload mode: `lfs` for *.safetensors, `regular` otherwise;
- `POST /<repo>.git/info/lfs/objects/batch`: the LFS batch API (basic transfer): an upload and a verify URL per object;
- `PUT /lfs-objects/<oid>`: the object's bytes (its sha256 must be the oid); `POST /lfs-verify`: it has arrived;
- `POST /api/models/<repo>/commit/<rev>`: the ndjson commit: inline base64 files and LFS pointers, stored as files.
Every request must carry `Authorization: Bearer <token>` except the LFS PUT (the Hub's is a presigned storage URL).
The server keeps what it saw: `repos` (repo -> visibility), `files[repo][path]` (bytes of the last commit),
`auth` (every Authorization header), `requests` (method and path).
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HubStandIn:
    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, str] = {}
        self.files: dict[str, dict[str, bytes]] = {}
        self.lfs: dict[str, bytes] = {}
        self.auth: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "HubStandIn":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while size := int(self.rfile.readline().strip().split(b";")[0], 16):
                        data += self.rfile.read(size)
                        self.rfile.readline()
                    self.rfile.readline()
                    return data
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def _reply(self, status: int, payload: dict | None = None) -> None:
                body = json.dumps(payload if payload is not None else {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _authorized(self) -> bool:
                header = self.headers.get("Authorization")
                with hub.lock:
                    hub.requests.append((self.command, self.path))
                    if header is not None:
                        hub.auth.append(header)
                if header != f"Bearer {hub.token}":
                    self._reply(401, {"error": "Invalid credentials"})
                    return False
                return True

            def do_PUT(self) -> None:
                body = self._body()
                with hub.lock:
                    hub.requests.append((self.command, self.path))
                match = re.fullmatch(r"/lfs-objects/([0-9a-f]{64})", self.path)
                if match is None or hashlib.sha256(body).hexdigest() != match[1]:
                    return self._reply(400, {"error": "bad LFS object"})
                with hub.lock:
                    hub.lfs[match[1]] = body
                self._reply(200)

            def do_POST(self) -> None:
                body = self._body()
                if not self._authorized():
                    return
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    request = json.loads(body)
                    repo = f"{request['organization']}/{request['name']}"
                    with hub.lock:
                        if repo in hub.repos:
                            return self._reply(409, {"error": "You already created this model repo",
                                                     "url": f"{hub.url}/{repo}"})  # as the Hub answers
                        hub.repos[repo] = request.get("visibility", "public")
                    return self._reply(200, {"url": f"{hub.url}/{repo}"})
                if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/preupload/[^/]+", path):
                    files = json.loads(body)["files"]
                    return self._reply(200, {"files": [
                        {"path": f["path"], "uploadMode": "lfs" if f["path"].endswith(".safetensors") else "regular",
                         "shouldIgnore": False, "oid": None} for f in files]})
                if match := re.fullmatch(r"/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path):
                    objects = json.loads(body)["objects"]
                    return self._reply(200, {"transfer": "basic", "objects": [
                        {"oid": o["oid"], "size": o["size"], "actions": {
                            "upload": {"href": f"{hub.url}/lfs-objects/{o['oid']}"},
                            "verify": {"href": f"{hub.url}/lfs-verify"}}} for o in objects]})
                if path == "/lfs-verify":
                    request = json.loads(body)
                    stored = hub.lfs.get(request["oid"])
                    ok = stored is not None and len(stored) == request["size"]
                    return self._reply(200 if ok else 404)
                if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/commit/[^/]+", path):
                    return self._commit(match[1], body)
                self._reply(404, {"error": f"no such endpoint {path}"})

            def _commit(self, repo: str, body: bytes) -> None:
                if repo not in hub.repos:
                    return self._reply(404, {"error": "Repository not found"})
                files = {}
                for line in body.decode().splitlines():
                    item = json.loads(line)
                    value = item["value"]
                    if item["key"] == "file":
                        files[value["path"]] = base64.b64decode(value["content"])
                    elif item["key"] == "lfsFile":
                        if value["oid"] not in hub.lfs:
                            return self._reply(422, {"error": f"LFS object {value['oid']} was never uploaded"})
                        files[value["path"]] = hub.lfs[value["oid"]]
                with hub.lock:
                    hub.files.setdefault(repo, {}).update(files)
                oid = hashlib.sha1(body).hexdigest()
                self._reply(200, {"commitUrl": f"{hub.url}/{repo}/commit/{oid}", "commitOid": oid,
                                  "pullRequestUrl": None})

        return Handler
