"""Serving personalization warm: `personalizer` (the loaded model and compiled programs, batches
padded to fixed sizes), `scheduler` (requests arriving together become one batch) and `service`
(the two together, what the app calls)."""
