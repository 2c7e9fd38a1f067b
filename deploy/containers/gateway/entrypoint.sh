#!/bin/bash
# The gateway's start: renders nginx.conf from the environment into /tmp/nginx (the root
# file system is read-only; /tmp is an emptyDir or podman's tmpfs), then runs nginx in
# the foreground. SIGTERM becomes nginx's graceful stop (SIGQUIT: open requests finish,
# keep-alive connections close).
#
#   NIMBUS_GATEWAY_UPSTREAMS  API instances, "host:port host:port ..." (required; on
#                             Kubernetes the API Service, e.g. "nimbus-api:8080")
#   NIMBUS_GATEWAY_SECRET     sent to the instances as X-Nimbus-Gateway (required)
#   NIMBUS_GATEWAY_PORT       listen port (8080)
#   NIMBUS_GATEWAY_AUTH_RATE / _AUTH_BURST   per-IP limit on /v1/auth/ (20r/s, 40)
#   NIMBUS_GATEWAY_STORAGE_ORIGIN  where presigned URLs point (CSP img-src/connect-src)
#   NIMBUS_GATEWAY_INBOX      the web inbox the app links to ("" in production)
#   NIMBUS_GATEWAY_TRUSTED_PROXIES  CIDRs of the proxies in front (an Ingress controller):
#                             the client's address is then taken from their X-Forwarded-For
set -euo pipefail

: "${NIMBUS_GATEWAY_UPSTREAMS:?NIMBUS_GATEWAY_UPSTREAMS is required}"
: "${NIMBUS_GATEWAY_SECRET:?NIMBUS_GATEWAY_SECRET is required}"
port=${NIMBUS_GATEWAY_PORT:-8080}
[[ $port =~ ^[0-9]+$ ]] || { echo "NIMBUS_GATEWAY_PORT must be a number" >&2; exit 2; }
[[ $NIMBUS_GATEWAY_SECRET =~ ^[A-Za-z0-9._~+/=-]+$ ]] || { echo "NIMBUS_GATEWAY_SECRET has unsafe characters" >&2; exit 2; }
upstreams=""
for server in $NIMBUS_GATEWAY_UPSTREAMS; do
  [[ $server =~ ^[A-Za-z0-9.:_-]+$ ]] || { echo "bad upstream '$server'" >&2; exit 2; }
  upstreams+="    server $server max_fails=2 fail_timeout=3s;"$'\n'
done
real_ip=""
for cidr in ${NIMBUS_GATEWAY_TRUSTED_PROXIES:-}; do
  [[ $cidr =~ ^[0-9a-fA-F.:/]+$ ]] || { echo "bad CIDR '$cidr'" >&2; exit 2; }
  real_ip+="  set_real_ip_from $cidr;"$'\n'
done
[[ -n $real_ip ]] && real_ip+="  real_ip_header X-Forwarded-For;"$'\n'"  real_ip_recursive on;"
mkdir -p /tmp/nginx
conf=/tmp/nginx/nginx.conf
template=$(</etc/nimbus/nginx.conf.template)
template=${template//@UPSTREAMS@/$upstreams}
template=${template//@PORT@/$port}
template=${template//@REAL_IP@/$real_ip}
template=${template//@SECRET@/$NIMBUS_GATEWAY_SECRET}
template=${template//@AUTH_RATE@/${NIMBUS_GATEWAY_AUTH_RATE:-20r/s}}
template=${template//@AUTH_BURST@/${NIMBUS_GATEWAY_AUTH_BURST:-40}}
template=${template//@STORAGE@/${NIMBUS_GATEWAY_STORAGE_ORIGIN:-}}
template=${template//@INBOX@/${NIMBUS_GATEWAY_INBOX:-}}
(umask 077 && printf '%s\n' "$template" >"$conf")

nginx -t -q -e stderr -c "$conf"
nginx -e stderr -c "$conf" &
pid=$!
trap 'kill -QUIT "$pid" 2>/dev/null' TERM INT
# wait returns early when a trapped signal arrives: wait again for nginx to finish.
status=0
wait "$pid" || status=$?
if kill -0 "$pid" 2>/dev/null; then
  status=0
  wait "$pid" || status=$?
fi
exit "$status"
