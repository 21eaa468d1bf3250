"""Loaded by every Python process the tests start (this folder is put first on PYTHONPATH).

It refuses any socket connection that leaves the machine, so a test that would download something fails
loudly instead of passing on a machine with network and hanging on one without.
"""

from lit_cs201_netguard import install

install()
