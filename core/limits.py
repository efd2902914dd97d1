"""Bounds shared by the API and the worker."""

# The largest value of the database's INTEGER columns (event seq, alias move ids, attempts, epochs): every integer
# a client sends for one of them is bounded by it in the schema, so an out-of-range number is a 422, never a
# driver error.
INT4_MAX = 2**31 - 1
