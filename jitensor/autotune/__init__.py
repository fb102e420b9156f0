"""Autotuning: search spaces of schedule steps, measurement, a cost model, records.

Modules (each owns one thing):
  space.py     a kernel's search space: knobs whose values turn into replayable schedule steps
  records.py   the tuning-record store (SQLite beside the kernel cache) and its JSON-lines export
  features.py  fixed-length features of a scheduled kernel's loop IR for the cost model
  hardware.py  measured figures of this machine (bandwidths, FMA throughput, thread hand-off)
  model.py     the XGBoost ranking model and its bootstrap ensemble (Thompson sampling)
  search.py    candidate proposal (simulated annealing) and the measure-refit loop
  synthetic.py synthetic spaces with a known optimum, for testing and benchmarking the search
"""
