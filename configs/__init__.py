"""The bundled ml_collections recipes; `img2imu --config NAME` loads `NAME.py` from here."""
