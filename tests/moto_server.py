"""moto's server with each DynamoDB request atomic, as DynamoDB is.

DynamoDB applies a conditional write atomically and isolates a transaction from every other
request. moto's server answers requests on threads, and its TransactWriteItems copies each table
it touches and, when the transaction fails (a condition, say), puts that copy back: any write
another request made meanwhile is lost, and a half-written item can be left behind. Concurrent
invocations (the redelivery, storm and end-to-end tests) race exactly there, so every DynamoDB
request here runs under one lock: requests of other services stay concurrent.

Usage: python tests/moto_server.py <moto_server arguments>
"""
import functools
import sys
import threading

from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_DYNAMODB = threading.RLock()
_call_action = DynamoHandler.call_action


@functools.wraps(_call_action)
def _atomic_call_action(self):
    with _DYNAMODB:
        return _call_action(self)


DynamoHandler.call_action = _atomic_call_action

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
