// parity's nginx mirror: keeps each response body (as it streams through, untouched) so the access log can
// write it beside the request body, one JSON line per exchange, for `parity ingest --follow`.
// njs runs every request in its own VM, so this module's globals belong to one request.
var chunks = [];

function capture(r, data, flags) {
    chunks.push(data);
    r.sendBuffer(data, flags);
}

function response_body(r) {
    return Buffer.concat(chunks).toString();
}

function latency_ms(r) {
    return String(Number(r.variables.request_time) * 1000);
}

function start_time(r) {
    return (Number(r.variables.msec) - Number(r.variables.request_time)).toFixed(3);
}

export default {capture, response_body, latency_ms, start_time};
