"""What the stages found, turned into objects: the tracker that gives boxes
stable IDs (:mod:`.tracker`, with the assignment in :mod:`.assign`), and the
zones and lines an operator draws in ``pipeline.toml`` with what crosses and
stays in them (:mod:`.areas`, on the plane geometry of :mod:`.geometry`).

Pure NumPy and the standard library: no ZeroMQ, no OpenCV. It runs where
every frame of a camera arrives in order -- the collector -- and the config
loader uses :mod:`.areas` to check what the operator wrote."""
