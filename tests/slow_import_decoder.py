"""The real PyAV decoder behind a module that takes seconds to import, as a cold import of a media or ML
library can on a loaded host (used by test_bad_input through data.decoder in an isolated helper)."""
import time

time.sleep(3.0)

from data_pipelines.decode.media import decode_media  # noqa: E402,F401
