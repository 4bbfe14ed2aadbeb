"""Codegen: a Relax module (float or integer) -> an executable for one target.

lower     graph passes that shape the module for the target's kernels (channels-last
          layout, pads folded, calibration constants as kernel parameters, ...)
pipeline  TVM's build pipeline with tvmq's kernels: a tuning log's records, else the
          default schedules (tvmq.kernels)
"""
