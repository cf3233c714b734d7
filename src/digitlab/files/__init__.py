"""Files: the names of what digitlab writes (`layout`) and how it writes them (`atomic`).

The bottom layer beside `errors`: it imports nothing of digitlab but `errors`, so every
other package may use it. Every write goes through `atomic` (temp file, fsync, rename), so
an interrupted run leaves the old file or the new one, never half of one.
"""
