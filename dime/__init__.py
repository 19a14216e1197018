"""dime: place DNN layer bundles on edge and cloud devices from bundle profiles and an ILP."""

__version__ = "0.1.0"
