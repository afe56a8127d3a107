"""Images on the host: TFDS datasets in, decoded uint8 96 × 128 batches out; nothing random here."""
