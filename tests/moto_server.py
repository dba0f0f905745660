"""moto's server with each DynamoDB request atomic, as DynamoDB is, and TransactWriteItems
idempotent per ClientRequestToken, as DynamoDB makes it.

DynamoDB applies a conditional write atomically and isolates a transaction from every other
request. moto's server answers requests on threads, and its TransactWriteItems copies each table
it touches and, when the transaction fails (a condition, say), puts that copy back: any write
another request made meanwhile is lost, and a half-written item can be left behind. Concurrent
invocations (the redelivery, storm and end-to-end tests) race exactly there, so every DynamoDB
request here runs under one lock: requests of other services stay concurrent.

moto ignores TransactWriteItems' ClientRequestToken. DynamoDB does not: for 10 minutes after the
first request with a token completed, a request with the same token and the same parameters
returns successfully without making any changes if that first request succeeded, and one with
the same token but other parameters gets IdempotentParameterMismatchException. That is what
makes a lost answer harmless: when the response of a transaction is lost (a dropped connection,
a timeout), the SDK retries it with the same token, and DynamoDB answers the retry without
applying the writes a second time. Without this, the local model would apply them again (count
an ADD twice, say), which AWS never does. So here a successful TransactWriteItems with a token
is remembered for 600 s (its response, and its request body canonicalized without the token,
ReturnConsumedCapacity and ReturnItemCollectionMetrics, which do not change what it does): a
request with the same token inside that window gets that response again, unexecuted, or the
mismatch error if its body differs. A cancelled or failed transaction changed nothing and is not
remembered: a retry runs it again. The tokens are kept per account and region, on moto's DynamoDB
backend, so moto's reset (POST /moto-api/reset) forgets them with the tables.

moto's TransactWriteItems also deep-copies every table it touches before it starts, to put the
copy back if the transaction is cancelled: each transaction costs time in the size of the table
(the 10,000-failure storm test ground to a halt at about 2,600 objects, each transaction slower
than the SDK's attempt timeout). A DynamoDB transaction costs the same whatever the table holds.
Here a transaction checks every condition first and writes nothing if one fails (as DynamoDB
answers a cancellation: every reason, the stored item where ReturnValuesOnConditionCheckFailure
asks for it), then applies its writes, keeping a copy of only the items it writes to put back if
moto refuses one half-way.

Usage: python tests/moto_server.py <moto_server arguments>
"""
import copy
import functools
import json
import sys
import threading
import time

from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ERROR_TYPE_PREFIX,
    DynamodbException,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.responses import DynamoHandler
from moto.server import main
from moto.utilities.aws_headers import amz_crc32, gen_amzn_requestid_long

_DYNAMODB = threading.RLock()
_call_action = DynamoHandler.call_action

# DynamoDB's idempotency window: a token counts for 10 minutes after its first request completed.
_TOKEN_WINDOW_SECONDS = 600
# Request parameters that change what a TransactWriteItems answers, not what it does.
_NOT_COMPARED = ("ClientRequestToken", "ReturnConsumedCapacity", "ReturnItemCollectionMetrics")
# Attribute of moto's DynamoDB backend (one per account and region) holding its tokens:
# {token: (completed at, time.monotonic(); canonical request body; (status, headers, body))}.
_TOKENS_ATTRIBUTE = "_replmon_client_request_tokens"


class IdempotentParameterMismatchException(DynamodbException):
    def __init__(self) -> None:
        super().__init__(
            ERROR_TYPE_PREFIX + "IdempotentParameterMismatchException",
            "DynamoDB rejected the request because you retried a request with a different"
            " payload but with an idempotent token that was already used.",
        )


@amz_crc32
def _error_response(handler, error):
    """The error answered as moto's call_action answers the errors its actions raise."""
    headers = dict(error.get_headers() or [])
    headers["status"] = error.code
    status, headers, body = handler._transform_response(
        handler.response_headers, (error.description, headers)
    )
    headers, body = handler._enrich_response(headers, body)
    return status, headers, body


def _token_and_body(handler):
    """(token, canonical body) of a TransactWriteItems with a ClientRequestToken, else None."""
    if handler._get_action() != "TransactWriteItems":
        return None
    try:
        request = json.loads(handler.raw_body or b"{}")
    except (TypeError, ValueError):
        return None
    token = request.get("ClientRequestToken") if isinstance(request, dict) else None
    if not isinstance(token, str) or not token:
        return None
    compared = {key: value for key, value in request.items() if key not in _NOT_COMPARED}
    return token, json.dumps(compared, sort_keys=True, separators=(",", ":"))


def _idempotent_call_action(handler):
    request = _token_and_body(handler)
    if request is None:
        return _call_action(handler)
    token, body = request
    backend = handler.dynamodb_backend
    tokens = getattr(backend, _TOKENS_ATTRIBUTE, None)
    if tokens is None:
        tokens = {}
        setattr(backend, _TOKENS_ATTRIBUTE, tokens)
    now = time.monotonic()
    for expired in [t for t, (at, _, _) in tokens.items() if now - at >= _TOKEN_WINDOW_SECONDS]:
        del tokens[expired]
    if token in tokens:
        _, first_body, (status, headers, response_body) = tokens[token]
        if body != first_body:
            return _error_response(handler, IdempotentParameterMismatchException())
        # The first answer again, unexecuted; a request id of its own, as every answer has.
        headers = dict(headers)
        gen_amzn_requestid_long(headers)
        return status, headers, response_body
    status, headers, response_body = _call_action(handler)
    if 200 <= int(status) < 300:
        tokens[token] = (time.monotonic(), body, (status, dict(headers), response_body))
    return status, headers, response_body


@functools.wraps(_call_action)
def _atomic_call_action(self):
    with _DYNAMODB:
        return _idempotent_call_action(self)


DynamoHandler.call_action = _atomic_call_action


def _transact_write_items(self, transact_items):
    """TransactWriteItems in the time of its items, not of the tables they are in."""
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    targets = set()
    plan = []
    reasons = []
    for item in transact_items:
        if len(item) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(item.items()))
        if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
            raise MockValidationException("Unsupported transaction operation " + op_type)
        table_name = op["TableName"]
        if op_type == "Put":
            table = self.get_table(table_name)
            key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = op["Item"][table.range_key_attr]
        else:
            key = op["Key"]
        target = (str(table_name), str(dict(sorted(key.items()))))
        if target in targets:
            raise MultipleTransactionsException()
        targets.add(target)
        current = self.get_item(table_name, key)
        condition = op.get("ConditionExpression")
        holds = condition is None or get_filter_expression(
            condition,
            op.get("ExpressionAttributeNames"),
            op.get("ExpressionAttributeValues"),
        ).expr(current)
        if holds:
            reasons.append((None, None, None))
        else:
            stored = None
            if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                stored = current.to_json()["Attributes"]
            reasons.append(("ConditionalCheckFailed", "The conditional request failed", stored))
        plan.append((op_type, op, table_name, key, current))
    if any(code is not None for code, _, _ in reasons):
        raise TransactionCanceledException(reasons)
    written = []
    try:
        for op_type, op, table_name, key, current in plan:
            if op_type == "ConditionCheck":
                continue
            before = copy.deepcopy(current.to_json()["Attributes"]) if current else None
            written.append((table_name, key, before))
            names = op.get("ExpressionAttributeNames")
            values = op.get("ExpressionAttributeValues")
            if op_type == "Put":
                self.put_item(table_name, op["Item"])
            elif op_type == "Delete":
                self.delete_item(table_name, key)
            else:
                self.update_item(table_name, key, op["UpdateExpression"], names, values)
    except Exception as error:
        for table_name, key, before in reversed(written):
            if before is None:
                self.delete_item(table_name, key)
            else:
                self.put_item(table_name, before)
        if isinstance(error, MockValidationException):
            raise
        raise TransactionCanceledException(
            [(type(error).__name__, str(error), None)]
            + [(None, None, None)] * (len(plan) - 1)
        )


DynamoDBBackend.transact_write_items = _transact_write_items

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
