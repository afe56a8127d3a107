"""IMU data on the host: reading published formats and checking what users hand us."""
