"""The tool's own file formats, one module each: schema (pydantic), reader (validates) and writer.

- ``manifest``: an export folder's ``manifest.json`` (format ``ddnn-deploy.export``);
- ``results``: bench ``results.json`` + ``results.csv`` (format ``ddnn-deploy.bench``);
- ``profiles``: device profiles, built in or from a TOML file, and their timing settings.

Nothing else in ddnn-deploy parses these files. A malformed file is ONE line naming the file and the
field (``manifest.json: artifacts[2].path: must be a relative path inside the folder``), raised as the
file family's ``DDNNError``. Pure Python + pydantic: no torch, no onnxruntime.
"""
