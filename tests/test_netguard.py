import socket
import subprocess
import sys
import urllib.request

import pytest
from lit_cs201_netguard import NetworkAccessError


def test_connecting_out_fails_in_the_test_process():
    with pytest.raises(NetworkAccessError):
        urllib.request.urlopen("https://example.com", timeout=5)
    with pytest.raises(NetworkAccessError):
        socket.create_connection(("93.184.216.34", 443), timeout=5)


def test_connecting_out_fails_in_subprocesses():
    code = "import socket; socket.create_connection(('93.184.216.34', 443), timeout=5)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "NetworkAccessError" in result.stderr


def test_loopback_stays_usable():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname(), timeout=5)
    client.close()
    server.close()
