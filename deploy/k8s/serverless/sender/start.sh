#!/bin/bash
# The function sender's start (runs in the gateway image, which has nginx and bash):
# renders nginx.conf with the function's address and token into /tmp (the root file
# system is read-only), then runs nginx in the foreground; SIGTERM becomes nginx's
# graceful stop, so an invocation in flight finishes.
#
#   NIMBUS_SENDER_TARGET   the Knative Service of the function (required)
#   NIMBUS_SENDER_NAMESPACE  its namespace (the downward API's metadata.namespace)
#   NIMBUS_FUNCTION_TOKEN  the function's token, from Secret nimbus-function (required)
set -euo pipefail

: "${NIMBUS_SENDER_TARGET:?NIMBUS_SENDER_TARGET is required}"
: "${NIMBUS_SENDER_NAMESPACE:?NIMBUS_SENDER_NAMESPACE is required}"
: "${NIMBUS_FUNCTION_TOKEN:?NIMBUS_FUNCTION_TOKEN is required}"
[[ $NIMBUS_SENDER_TARGET =~ ^[a-z0-9-]+$ && $NIMBUS_SENDER_NAMESPACE =~ ^[a-z0-9-]+$ ]] ||
  { echo "NIMBUS_SENDER_TARGET and NIMBUS_SENDER_NAMESPACE must be DNS labels" >&2; exit 2; }
# Goes inside a quoted nginx string: no quotes, spaces, semicolons or backslashes.
[[ $NIMBUS_FUNCTION_TOKEN =~ ^[A-Za-z0-9._~+/=-]{32,}$ ]] ||
  { echo "NIMBUS_FUNCTION_TOKEN must be at least 32 characters of [A-Za-z0-9._~+/=-]" >&2; exit 2; }
echo "sender: forwarding to ${NIMBUS_SENDER_TARGET}.${NIMBUS_SENDER_NAMESPACE} with its token"
mkdir -p /tmp/sender
conf=/tmp/sender/nginx.conf
template=$(</etc/sender/nginx.conf.template)
template=${template//@HOST@/${NIMBUS_SENDER_TARGET}.${NIMBUS_SENDER_NAMESPACE}.svc.cluster.local}
template=${template//@TOKEN@/$NIMBUS_FUNCTION_TOKEN}
(umask 077 && printf '%s\n' "$template" >"$conf")

nginx -t -q -e stderr -c "$conf"
nginx -e stderr -c "$conf" &
pid=$!
trap 'kill -QUIT "$pid" 2>/dev/null' TERM INT
status=0
wait "$pid" || status=$?
if kill -0 "$pid" 2>/dev/null; then
  status=0
  wait "$pid" || status=$?
fi
exit "$status"
