# The inference server (`kiln serve`): added by src/server/ once it exists.
