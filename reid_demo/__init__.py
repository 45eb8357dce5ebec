"""Demo and test footage, kept out of the runtime packages: a synthetic multi-camera scene
with ground truth (:mod:`reid_demo.scene`) and OpenCV's vtest.avi (:mod:`reid_demo.vtest`).
Used by ``make demo``, the tests and the benchmarks; the pipeline itself never imports it."""
