"""A Cloud Storage emulator on 127.0.0.1 for the tests, and the settings that point clients at it.

`gcp-storage-emulator` (the `test` extra) serves GCS's JSON API in this process, in memory.
What can be pointed at it: `etils.epath` through fsspec/gcsfs (`EPATH_USE_TF=false` and
`STORAGE_EMULATOR_HOST`), hence Orbax's directory handling, TFDS's metadata reads and writes
and everything of ours; and tensorstore, which writes Orbax's arrays
(`TENSORSTORE_GCS_HTTP_URL`, with `GOOGLE_AUTH_TOKEN_FOR_TESTING` in place of credentials).
What cannot: TensorFlow's own GCS file system (tf.io.gfile, tf.data, tf.summary), whose
endpoint is compiled in; tests that go through it swap in a local stand-in and say so.
"""

from __future__ import annotations

import logging
import socket

import pytest

BUCKET = "img2imu-test"


@pytest.fixture(scope="session")
def gcs():
    """`gs://img2imu-test`, served on a free loopback port for the session, then stopped."""
    server_module = pytest.importorskip("gcp_storage_emulator.server")
    pytest.importorskip("gcsfs")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    logging.getLogger("gcp_storage_emulator").setLevel(logging.ERROR)
    _send_generation_on_download(server_module)
    server = server_module.create_server("127.0.0.1", port, in_memory=True,
                                         default_bucket=BUCKET)
    server.start()
    url = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"STORAGE_EMULATOR_HOST": url, "EPATH_USE_TF": "false",
                            "TENSORSTORE_GCS_HTTP_URL": url,
                            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",
                            # google-auth would probe the GCE metadata server on every client
                            # (measured: 3x slower emulator round trips with the probe).
                            "NO_GCE_CHECK": "true"}.items():
            patch.setenv(name, value)
        # epath decides once per process whether TensorFlow serves gs://; decide again now,
        # and again after the session.
        from etils.epath import gpath

        gpath._is_tf_installed.cache_clear()
        try:
            yield f"gs://{BUCKET}"
        finally:
            server.stop()
            gpath._is_tf_installed.cache_clear()


def _send_generation_on_download(server_module) -> None:
    """Real GCS answers a media download with `x-goog-generation`; tensorstore (Orbax's array
    reads) requires it and the emulator leaves it out, so add it."""
    from gcp_storage_emulator.handlers import objects

    if getattr(objects.download, "sends_generation", False):
        return
    plain = objects.download

    def download(request, response, storage, *args, **kwargs):
        plain(request, response, storage, *args, **kwargs)
        try:
            found = storage.get_file_obj(request.params["bucket_name"],
                                         request.params["object_id"])
        except Exception:  # not found: the plain handler has answered 404
            return
        response["x-goog-generation"] = found["generation"]
        response["x-goog-metageneration"] = found["metageneration"]

    download.sends_generation = True
    objects.download = download  # objects.get calls it by name for ?alt=media
    for _, methods in server_module.HANDLERS:
        for method, handler in methods.items():
            if handler is plain:
                methods[method] = download
