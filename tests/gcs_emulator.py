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
    server = server_module.create_server("127.0.0.1", port, in_memory=True,
                                         default_bucket=BUCKET)
    server.start()
    url = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"STORAGE_EMULATOR_HOST": url, "EPATH_USE_TF": "false",
                            "TENSORSTORE_GCS_HTTP_URL": url,
                            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator"}.items():
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
