"""Datasets: built-in data sets and user files (csv/npz/image folders) as plain NumPy arrays."""
