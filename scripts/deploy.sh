#!/usr/bin/env bash
# Deploy ImageFlow to a Google Cloud project, from nothing to a serving system, idempotently:
# APIs, service accounts and IAM, a GKE cluster with Workload Identity, the bucket, Firestore,
# the Pub/Sub topics and subscriptions (dead-lettering included), the SendGrid secret, the
# images (Cloud Build), KEDA (Helm), the Kubernetes manifests and the email function.
# Every step checks before it creates, so a second run changes only what changed.
#
#   ./scripts.sh deploy --project my-project [options]      (or: bash scripts/deploy.sh ...)
#   ./scripts.sh deploy --project my-project --dry-run      print the plan, run nothing
#   ./scripts.sh teardown --project my-project [--keep-data] remove what the deploy created
#   ./scripts.sh deploy --project my-project --rollback     back to the release before the current one
#
# docs/deploy.md is the operator's guide. Run with --help for the options.
set -euo pipefail

if ((BASH_VERSINFO[0] < 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] < 4))); then
  echo "deploy.sh needs bash 4.4 or newer (Cloud Shell has it; on macOS: brew install bash)" >&2
  exit 2
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  cat <<'EOF'
Usage: scripts/deploy.sh --project PROJECT_ID [options]

Options (each also read from the environment variable in brackets):
  --project ID            Google Cloud project, billing enabled [PROJECT_ID, GCP_PROJECT]
  --region REGION         region of the cluster, bucket, images, function [REGION] (us-central1)
  --cluster NAME          GKE cluster name [CLUSTER] (imageflow)
  --cluster-mode MODE     autopilot or standard [CLUSTER_MODE] (autopilot)
  --bucket NAME           Cloud Storage bucket [GCS_BUCKET] (PROJECT_ID-imageflow)
  --firestore-location L  Firestore location [FIRESTORE_LOCATION] (the region)
  --retention-days N      delete jobs and their images after N days: the bucket's lifecycle
                          rule and Firestore's TTL policy [JOB_RETENTION_DAYS] (30)
  --input-retention-hours N  delete each job's originals N hours after it completes (its
                          outputs keep --retention-days); 0 keeps them as long as the job
                          [INPUT_RETENTION_HOURS] (168)
  --domain NAME           serve HTTPS on NAME with a managed certificate [DOMAIN]
                          (default: <address-with-dashes>.sslip.io, a name that resolves
                          to the reserved address, so HTTPS works without a domain)
  --insecure-http         no certificate: serve plain HTTP on the address (API keys and
                          signed links travel in clear; for a throwaway test only)
  --public-base-url URL   base of the links in emails [PUBLIC_BASE_URL]
                          (https://DOMAIN, or http://<the address> with --insecure-http)
  --email-from ADDRESS    sender of the emails, a SendGrid verified sender [EMAIL_FROM]
                          (required: SendGrid refuses any other sender)
  --allow-open-api        deploy without API_KEYS: anyone can list, read and delete every job
  --tag TAG               image tag [IMAGE_TAG] (the git commit)
  --skip-build            deploy images already pushed with --tag
  --rollback              re-apply the release before the current one as a whole: its
                          manifests (images by digest, configuration) and its email
                          function (source and environment), read back from
                          gs://BUCKET-releases/releases/ (every deploy records one there)
  --keda-version V        KEDA Helm chart version [KEDA_VERSION] (2.21.1)
  --dry-run               print every command, in order, and run none [DRY_RUN=1]
  --teardown              remove everything the deploy created, in an order that leaks
                          nothing (./scripts.sh teardown); irreversible
  --keep-data             with --teardown: keep the bucket and the Firestore database
  -h, --help              this help

Secrets come from the environment only: SENDGRID_API_KEY (stored in Secret Manager; needed on
the first deploy), API_KEYS (required unless --allow-open-api) and URL_SIGNING_SECRET (the
Kubernetes Secret imageflow-secrets, read by image-handler and interaction-manager: one
signs the emailed zip links, the other verifies them). Topic and subscription names come from
imageflow/topology.py (overridable by the same variables as the services), and the topics
and subscriptions are created by its setup command, run with PYTHON [python3] and your
application-default credentials; ACK_DEADLINE_SECONDS and MAX_DELIVERY_ATTEMPTS are the
services' variables too.
EOF
}

die() { echo "deploy.sh: $*" >&2; exit 2; }

# ---------------------------------------------------------------- configuration ----------
PROJECT_ID="${PROJECT_ID:-${GCP_PROJECT:-}}"
REGION="${REGION:-us-central1}"
CLUSTER="${CLUSTER:-imageflow}"
CLUSTER_MODE="${CLUSTER_MODE:-autopilot}"
GCS_BUCKET="${GCS_BUCKET:-}"
FIRESTORE_LOCATION="${FIRESTORE_LOCATION:-}"
JOB_RETENTION_DAYS="${JOB_RETENTION_DAYS:-${RETENTION_DAYS:-30}}"
INPUT_RETENTION_HOURS="${INPUT_RETENTION_HOURS:-168}"
DOMAIN="${DOMAIN:-}"
PUBLIC_BASE_URL="${PUBLIC_BASE_URL:-}"
EMAIL_FROM="${EMAIL_FROM:-}"
IMAGE_TAG="${IMAGE_TAG:-}"
# The newest chart release confirmed (github.com/kedacore/charts/releases/tag/v2.21.1).
KEDA_VERSION="${KEDA_VERSION:-2.21.1}"
PYTHON="${PYTHON:-python3}"
ALLOW_OPEN_API=0
INSECURE_HTTP=0
TEARDOWN=0
KEEP_DATA=0
ROLLBACK=0
DRY_RUN="${DRY_RUN:-0}"
SKIP_BUILD=0

while (($#)); do
  case "$1" in
    --project) PROJECT_ID="${2:?--project needs a value}"; shift 2 ;;
    --region) REGION="${2:?--region needs a value}"; shift 2 ;;
    --cluster) CLUSTER="${2:?--cluster needs a value}"; shift 2 ;;
    --cluster-mode) CLUSTER_MODE="${2:?--cluster-mode needs a value}"; shift 2 ;;
    --bucket) GCS_BUCKET="${2:?--bucket needs a value}"; shift 2 ;;
    --firestore-location) FIRESTORE_LOCATION="${2:?--firestore-location needs a value}"; shift 2 ;;
    --retention-days) JOB_RETENTION_DAYS="${2:?--retention-days needs a value}"; shift 2 ;;
    --input-retention-hours) INPUT_RETENTION_HOURS="${2:?--input-retention-hours needs a value}"; shift 2 ;;
    --domain) DOMAIN="${2:?--domain needs a value}"; shift 2 ;;
    --public-base-url) PUBLIC_BASE_URL="${2:?--public-base-url needs a value}"; shift 2 ;;
    --email-from) EMAIL_FROM="${2:?--email-from needs a value}"; shift 2 ;;
    --tag) IMAGE_TAG="${2:?--tag needs a value}"; shift 2 ;;
    --skip-build) SKIP_BUILD=1; shift ;;
    --allow-open-api) ALLOW_OPEN_API=1; shift ;;
    --insecure-http) INSECURE_HTTP=1; shift ;;
    --teardown) TEARDOWN=1; shift ;;
    --keep-data) KEEP_DATA=1; shift ;;
    --rollback) ROLLBACK=1; shift ;;
    --keda-version) KEDA_VERSION="${2:?--keda-version needs a value}"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

PLACEHOLDER_PROJECT=0 PLACEHOLDER_EMAIL_FROM=0
if [[ -z "$PROJECT_ID" ]]; then
  # A dry run may show the plan for a placeholder; a deploy needs the real project.
  ((DRY_RUN)) || { usage >&2; die "--project (or PROJECT_ID) is required"; }
  PROJECT_ID=your-project-id PLACEHOLDER_PROJECT=1
fi
[[ "$PROJECT_ID" =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]] || die "not a project id: $PROJECT_ID"
[[ "$CLUSTER_MODE" == autopilot || "$CLUSTER_MODE" == standard ]] || die "--cluster-mode: autopilot or standard"
[[ "$JOB_RETENTION_DAYS" =~ ^[1-9][0-9]*$ ]] || die "--retention-days must be a positive integer"
[[ "$INPUT_RETENTION_HOURS" =~ ^[0-9]+$ ]] || die "--input-retention-hours must be a whole number of hours (0: keep)"
[[ "$DRY_RUN" == 1 || "$DRY_RUN" == 0 ]] || die "DRY_RUN must be 0 or 1"
((KEEP_DATA <= TEARDOWN)) || die "--keep-data goes with --teardown"
((ROLLBACK + TEARDOWN < 2)) || die "--rollback and --teardown contradict each other"
GCS_BUCKET="${GCS_BUCKET:-$PROJECT_ID-imageflow}"
# Each deploy's record (issue 27 M5): releases/<n>.json (the images' digests), releases/<n>/
# (the rendered manifests, the function's source and environment) and releases/current, in
# a bucket of their own: the data bucket's lifecycle rule would delete them with the jobs.
RELEASES_BUCKET="$GCS_BUCKET-releases"
FIRESTORE_LOCATION="${FIRESTORE_LOCATION:-$REGION}"
# The email function always sends through SendGrid, which answers 403 for a sender that is
# not verified: a default sender would drop every email.
if [[ -z "$EMAIL_FROM" ]]; then
  if ! ((TEARDOWN || ROLLBACK)) && { ! ((DRY_RUN)) || [[ -n "${SENDGRID_API_KEY:-}" ]]; }; then
    die "--email-from (or EMAIL_FROM) is required: a sender verified in SendGrid"
  fi
  EMAIL_FROM="ImageFlow <no-reply@your-domain.example>" PLACEHOLDER_EMAIL_FROM=1
fi
# Without API keys every caller is the same anonymous owner: anyone could list every job
# (with its email address), download and delete it.
if [[ -z "${API_KEYS:-}" ]] && ! ((ALLOW_OPEN_API || DRY_RUN || TEARDOWN || ROLLBACK)); then
  die "API_KEYS is not set: set it (comma-separated keys) or pass --allow-open-api"
fi
# With keys on, the services refuse to start without the link-signing key (never derived from the
# keys): it must be given, and kept for later deploys (links already sent are signed with it).
if [[ -n "${API_KEYS:-}" && -z "${URL_SIGNING_SECRET:-}" ]] && ! ((DRY_RUN || TEARDOWN || ROLLBACK)); then
  die "URL_SIGNING_SECRET is not set: with API_KEYS the services need it; make one once and keep it, e.g. export URL_SIGNING_SECRET=\$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
fi

# Topic and subscription names, dead-letter wiring, and who publishes and subscribes where:
# imageflow/topology.py's table, the one place they are written (the same variables override the
# names for the services and here). Step 8 grants the roles from its rows.
TOPOLOGY_ROWS=()
while read -r kind first second; do
  case "$kind" in
    name) [[ "$first" =~ ^[A-Z_]+_(TOPIC|SUBSCRIPTION)$ ]] || die "unexpected topology name: $first"
          printf -v "$first" '%s' "$second" ;;
    dead-letter|publish|subscribe|view) TOPOLOGY_ROWS+=("$kind $first $second") ;;
    *) die "unexpected topology output: $kind $first $second" ;;
  esac
done < <(cd "$ROOT" && "$PYTHON" -m imageflow.topology --table --no-email-subscription)
[[ -n "${TASKS_SUBSCRIPTION:-}" && -n "${NOTIFICATIONS_DLQ_TOPIC:-}" && ${#TOPOLOGY_ROWS[@]} -gt 0 ]] \
  || die "cannot read the topology with $PYTHON -m imageflow.topology --table"
WEBHOOK_MAX_ATTEMPTS="${WEBHOOK_MAX_ATTEMPTS:-5}"
ACK_DEADLINE_SECONDS="${ACK_DEADLINE_SECONDS:-60}"
MAX_DELIVERY_ATTEMPTS="${MAX_DELIVERY_ATTEMPTS:-5}"
RETRY_MIN_BACKOFF_SECONDS="${RETRY_MIN_BACKOFF_SECONDS:-1}"
RETRY_MAX_BACKOFF_SECONDS="${RETRY_MAX_BACKOFF_SECONDS:-60}"
if ! [[ "$ACK_DEADLINE_SECONDS" =~ ^[0-9]+$ ]] || ((ACK_DEADLINE_SECONDS < 10 || ACK_DEADLINE_SECONDS > 600)); then
  die "ACK_DEADLINE_SECONDS must be 10..600 (Pub/Sub's range)"
fi
if ! [[ "$MAX_DELIVERY_ATTEMPTS" =~ ^[0-9]+$ ]] || ((MAX_DELIVERY_ATTEMPTS < 5 || MAX_DELIVERY_ATTEMPTS > 100)); then
  die "MAX_DELIVERY_ATTEMPTS must be 5..100 (Pub/Sub's dead-letter range)"
fi

NAMESPACE=imageflow
REPOSITORY=imageflow
STATIC_IP_NAME=imageflow-ip            # k8s/base/ingress.yaml names it
SENDGRID_SECRET=imageflow-sendgrid
FUNCTION_NAME=imageflow-email
FUNCTION_SOURCE=functions/email_notifier
FUNCTION_ENTRY_POINT=notify
FUNCTION_RUNTIME=python311
GSA_DOMAIN="$PROJECT_ID.iam.gserviceaccount.com"
WI_POOL="$PROJECT_ID.svc.id.goog"
REGISTRY="$REGION-docker.pkg.dev/$PROJECT_ID/$REPOSITORY"
# Generated files (lifecycle rule, build config, function env, the release record) live in
# .deploy/, which ignores itself in git.
WORK_DIR=".deploy/$PROJECT_ID"

# Google service accounts. The workloads' names are those the KSAs in k8s/base annotate.
GSA_HANDLER="imageflow-image-handler@$GSA_DOMAIN"
GSA_MANAGER="imageflow-interaction-manager@$GSA_DOMAIN"
GSA_PROCESSOR="imageflow-image-processor@$GSA_DOMAIN"
GSA_EMAIL="imageflow-email@$GSA_DOMAIN"
GSA_KEDA="keda-operator@$GSA_DOMAIN"
GSA_NODES="imageflow-nodes@$GSA_DOMAIN"
GSA_BUILD="imageflow-build@$GSA_DOMAIN"
SERVICE_ACCOUNTS=(  # name, display name
  "imageflow-image-handler|ImageFlow image-handler (REST API)"
  "imageflow-interaction-manager|ImageFlow interaction-manager"
  "imageflow-image-processor|ImageFlow image-processor"
  "imageflow-email|ImageFlow email function"
  "keda-operator|KEDA operator (reads Pub/Sub metrics)"
  "imageflow-nodes|ImageFlow GKE nodes"
  "imageflow-build|ImageFlow image and function builds"
)
# Project roles. Firestore: the services that read or write job documents. Not the processor:
# job documents hold emails and webhook secrets, and it needs none of them (a task carries its
# caller's digest for dedupe; a cancel reaches it as the marker <job_id>/control/cancelled in
# the bucket). Traces (OTEL_TRACES_EXPORTER=gcp_trace in the gke overlay and the function's
# env): every workload that makes spans writes them to Cloud Trace (telemetry.googleapis.com's OTLP).
PROJECT_ROLES=(
  "$GSA_HANDLER roles/datastore.user"
  "$GSA_MANAGER roles/datastore.user"
  "$GSA_EMAIL roles/datastore.user"
  "$GSA_KEDA roles/monitoring.viewer"
  "$GSA_NODES roles/container.defaultNodeServiceAccount"
  "$GSA_BUILD roles/cloudbuild.builds.builder"
  "$GSA_HANDLER roles/cloudtrace.agent"
  "$GSA_MANAGER roles/cloudtrace.agent"
  "$GSA_PROCESSOR roles/cloudtrace.agent"
  "$GSA_EMAIL roles/cloudtrace.agent"
)

# Images: name, Dockerfile, build context, container port (one per deployable). The three
# services share the root Dockerfile (ARG SERVICE, PORT); the ports are k8s/base's.
IMAGES=(
  "image-handler Dockerfile . 8080"
  "interaction-manager Dockerfile . 8081"
  "image-processor Dockerfile . 8082"
  "frontend frontend/Dockerfile frontend -"
)

if [[ -z "$IMAGE_TAG" ]]; then
  IMAGE_TAG="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo manual)"
  # A tag must name one content: uncommitted changes get their own.
  if [[ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ]]; then
    IMAGE_TAG="$IMAGE_TAG-dirty-$(date -u +%Y%m%d%H%M%S)"
  fi
fi

# HTTPS by default: API keys and the signed zip links must not travel in clear. Without
# --domain the certificate is for <address-with-dashes>.sslip.io (known once the address is
# reserved, step 10); plain HTTP only when asked for.
if [[ -n "$DOMAIN" ]] && ((INSECURE_HTTP)); then
  die "--domain and --insecure-http contradict each other: a domain is served over HTTPS"
fi
if ((INSECURE_HTTP)); then
  OVERLAY=k8s/overlays/gke
  ((TEARDOWN)) || echo "deploy.sh: --insecure-http: the API takes its keys, and sends signed download links, over plain HTTP" >&2
else
  OVERLAY=k8s/overlays/gke-https
fi

# ---------------------------------------------------------------- plan machinery ---------
# In a dry run every command is printed, as a bash script one could run from the repo root,
# and nothing is executed. Values only known while deploying (the project number, the
# Ingress address) appear in the plan as shell variables assigned by the command that
# reads them.
RUNTIME_VARS=(PROJECT_NUMBER INGRESS_IP INGRESS_HOST EMAIL_TRIGGER EMAIL_TRIGGER_SUBSCRIPTION RELEASE
              CURRENT_RELEASE ROLLBACK_RELEASE IMAGE_HANDLER_DIGEST INTERACTION_MANAGER_DIGEST
              IMAGE_PROCESSOR_DIGEST FRONTEND_DIGEST)

quote() {  # one word, quoted for the printed plan
  local w="$1" e v
  if [[ "$w" =~ ^[A-Za-z0-9_./:=@,+%^-]+$ ]]; then
    printf '%s' "$w"
  elif [[ "$w" == *"\${"* ]]; then
    e="${w//\\/\\\\}"; e="${e//\"/\\\"}"; e="${e//\`/\\\`}"; e="${e//\$/\\\$}"
    for v in "${RUNTIME_VARS[@]}"; do e="${e//\\\$\{$v\}/\$\{$v\}}"; done
    printf '"%s"' "$e"
  else
    printf "'%s'" "${w//\'/\'\\\'\'}"
  fi
}

quote_all() {
  local out="" w
  for w in "$@"; do out+="${out:+ }$(quote "$w")"; done
  printf '%s' "$out"
}

say() { printf '%s\n' "$*"; }                       # a line of the plan (dry run)
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

step() {  # a numbered section
  if ((DRY_RUN)); then say ""; say "# ---- $*"; else log "$*"; fi
}

run() {  # run a command (or print it)
  if ((DRY_RUN)); then say "$(quote_all "$@")"; return 0; fi
  printf '+ %s\n' "$(quote_all "$@")" >&2
  "$@"
}

ensure() {  # ensure CHECK... -- CREATE...: run CREATE unless CHECK succeeds
  local check=() create=()
  while (($#)) && [[ "$1" != -- ]]; do check+=("$1"); shift; done
  shift
  create=("$@")
  if ((DRY_RUN)); then say "$(quote_all "${check[@]}") >/dev/null 2>&1 || $(quote_all "${create[@]}")"; return 0; fi
  if "${check[@]}" >/dev/null 2>&1; then
    printf '  exists: %s\n' "$(quote_all "${check[@]}")" >&2
  else
    run "${create[@]}"
  fi
}

capture() {  # capture VAR CMD...: VAR=$(CMD)
  local var="$1"; shift
  if ((DRY_RUN)); then
    say "$var=\"\$($(quote_all "$@"))\""
    # shellcheck disable=SC2016  # a literal ${VAR}: the plan assigns it when it runs
    printf -v "$var" '${%s}' "$var"
  else
    printf '+ %s=%s\n' "$var" "\$($(quote_all "$@"))" >&2
    printf -v "$var" '%s' "$("$@")"
  fi
}

write_file() {  # write_file PATH CONTENT
  local path="$1" content="$2" e v
  if ((DRY_RUN)); then
    e="${content//\\/\\\\}"; e="${e//\`/\\\`}"; e="${e//\$/\\\$}"
    for v in "${RUNTIME_VARS[@]}"; do e="${e//\\\$\{$v\}/\$\{$v\}}"; done
    say "mkdir -p $(quote "$(dirname "$path")")"
    say "cat > $(quote "$path") <<EOF"
    say "$e"
    say "EOF"
    return 0
  fi
  printf '+ write %s\n' "$path" >&2
  mkdir -p "$(dirname "$path")"
  printf '%s\n' "$content" > "$path"
}

# ok_if_exists CMD...: for creates that have no cheap existence check (Firestore indexes):
# "already exists" counts as success. The dry run prints the function so the plan runs too.
ok_if_exists() {
  local out
  if out="$("$@" 2>&1)"; then printf '%s\n' "$out" >&2; return 0; fi
  if grep -qiE 'already ?exists|ALREADY_EXISTS' <<<"$out"; then
    printf '  exists: %s\n' "$*" >&2; return 0
  fi
  printf '%s\n' "$out" >&2
  return 1
}

# alert_policy_exists PROJECT ID: whether an alert policy labelled imageflow_alert=ID exists
# (policies get server-chosen names, so they are found by their label).
alert_policy_exists() {
  [[ -n "$(gcloud alpha monitoring policies list --project="$1" --filter="userLabels.imageflow_alert=$2" \
           --format='value(name)' 2>/dev/null)" ]]
}

run_ok_if_exists() {
  if ((DRY_RUN)); then say "ok_if_exists $(quote_all "$@")"; return 0; fi
  printf '+ %s\n' "$(quote_all "$@")" >&2
  ok_if_exists "$@"
}

# retry_propagation CMD...: run CMD; while it fails because a permission or identity is not yet
# visible everywhere (a service account or agent created seconds ago, Eventarc's service agent
# on a project that just enabled Eventarc: terraform-provider-google #25294), wait and run it
# again, with doubling delays (DEPLOY_RETRY_DELAY_SECONDS, 10, up to 180), DEPLOY_RETRY_ATTEMPTS
# times at most (10: about 17 minutes). Any other error fails at once. The dry run prints the
# function so the plan retries too.
retry_propagation() {
  local attempts="${DEPLOY_RETRY_ATTEMPTS:-10}" delay="${DEPLOY_RETRY_DELAY_SECONDS:-10}" attempt=1 out status
  out="$(mktemp)"
  while :; do
    status=0
    "$@" 2>&1 | tee "$out" >&2 || status=$?
    if ((status == 0)); then rm -f "$out"; return 0; fi
    if ! grep -qiE '(service ?account|identity pool).*does not exist|eventarc service agent|propagat' "$out"; then
      rm -f "$out"; return "$status"
    fi
    if ((attempt >= attempts)); then
      rm -f "$out"
      printf 'deploy.sh: still failing after %s attempts, waiting for new permissions to propagate: %s\n' "$attempt" "$*" >&2
      printf 'deploy.sh: on a new project this can take up to 25 minutes; run the deploy again later, it resumes where it stopped (docs/deploy.md, "When a step fails")\n' >&2
      return "$status"
    fi
    printf '  waiting for permissions to propagate (attempt %s of %s failed; next in %ss): %s\n' \
      "$attempt" "$attempts" "$delay" "$1 ${2:-} ${3:-}" >&2
    sleep "$delay"
    attempt=$((attempt + 1)) delay=$((delay * 2 > 180 ? 180 : delay * 2))
  done
}

run_retry() {  # run CMD (or print it) under retry_propagation
  if ((DRY_RUN)); then say "retry_propagation $(quote_all "$@")"; return 0; fi
  printf '+ %s\n' "$(quote_all "$@")" >&2
  retry_propagation "$@"
}

bind_project_role() {  # member role: project-level IAM (adding an existing binding is a no-op)
  run_retry gcloud projects add-iam-policy-binding "$PROJECT_ID" --member="$1" --role="$2" \
    --condition=None --quiet --format=none
}

unbind_project_role() {  # member role: drop a binding an earlier deploy granted (usually absent: nothing to do)
  local cmd=(gcloud projects remove-iam-policy-binding "$PROJECT_ID" --member="$1" --role="$2"
             --condition=None --quiet --format=none)
  if ((DRY_RUN)); then say "$(quote_all "${cmd[@]}") >/dev/null 2>&1 || true"; return 0; fi
  printf '+ %s\n' "$(quote_all "${cmd[@]}")" >&2
  "${cmd[@]}" >/dev/null 2>&1 || printf '  not bound: %s %s\n' "$1" "$2" >&2
}

ensure_service_account() {  # name display-name
  ensure gcloud iam service-accounts describe "$1@$GSA_DOMAIN" --project="$PROJECT_ID" \
    -- gcloud iam service-accounts create "$1" --project="$PROJECT_ID" --display-name="$2"
}

# The environment of the topology setup command (imageflow/topology.py): the names and
# settings deploy.sh uses, billed to this project (GOOGLE_CLOUD_QUOTA_PROJECT: the
# application-default credentials' own quota project may be another one, where Pub/Sub is
# not even enabled).
topology_env=(env GOOGLE_CLOUD_QUOTA_PROJECT="$PROJECT_ID" IMAGEFLOW_BACKEND=gcp GCP_PROJECT="$PROJECT_ID" GCS_BUCKET="$GCS_BUCKET"
              ACK_DEADLINE_SECONDS="$ACK_DEADLINE_SECONDS" MAX_DELIVERY_ATTEMPTS="$MAX_DELIVERY_ATTEMPTS"
              JOBS_TOPIC="$JOBS_TOPIC" TASKS_TOPIC="$TASKS_TOPIC" RESULTS_TOPIC="$RESULTS_TOPIC"
              NOTIFICATIONS_TOPIC="$NOTIFICATIONS_TOPIC" TASKS_DLQ_TOPIC="$TASKS_DLQ_TOPIC"
              JOBS_SUBSCRIPTION="$JOBS_SUBSCRIPTION" TASKS_SUBSCRIPTION="$TASKS_SUBSCRIPTION"
              RESULTS_SUBSCRIPTION="$RESULTS_SUBSCRIPTION" TASKS_DLQ_SUBSCRIPTION="$TASKS_DLQ_SUBSCRIPTION"
              NOTIFICATIONS_SUBSCRIPTION="$NOTIFICATIONS_SUBSCRIPTION" WEBHOOKS_DLQ_TOPIC="$WEBHOOKS_DLQ_TOPIC"
              WEBHOOKS_SUBSCRIPTION="$WEBHOOKS_SUBSCRIPTION" WEBHOOKS_DLQ_SUBSCRIPTION="$WEBHOOKS_DLQ_SUBSCRIPTION"
              WEBHOOK_MAX_ATTEMPTS="$WEBHOOK_MAX_ATTEMPTS" UPLOADS_TOPIC="$UPLOADS_TOPIC"
              UPLOADS_SUBSCRIPTION="$UPLOADS_SUBSCRIPTION" RETRY_MIN_BACKOFF_SECONDS="$RETRY_MIN_BACKOFF_SECONDS"
              RETRY_MAX_BACKOFF_SECONDS="$RETRY_MAX_BACKOFF_SECONDS")

remove() {  # remove CHECK... -- DELETE...: run DELETE if CHECK succeeds (already gone: nothing to do)
  local check=() delete=()
  while (($#)) && [[ "$1" != -- ]]; do check+=("$1"); shift; done
  shift
  delete=("$@")
  if ((DRY_RUN)); then say "if $(quote_all "${check[@]}") >/dev/null 2>&1; then $(quote_all "${delete[@]}"); fi"; return 0; fi
  if "${check[@]}" >/dev/null 2>&1; then
    run "${delete[@]}"
  else
    printf '  absent: %s\n' "$(quote_all "${check[@]}")" >&2
  fi
}

# delete_alert_policies PROJECT ID...: the alert policies labelled imageflow_alert=ID (their
# names are chosen by the server). The dry run prints the function so the plan runs too.
delete_alert_policies() {
  local project="$1" id name
  shift
  for id in "$@"; do
    for name in $(gcloud alpha monitoring policies list --project="$project" \
                  --filter="userLabels.imageflow_alert=$id" --format='value(name)'); do
      gcloud alpha monitoring policies delete "$name" --project="$project" --quiet
    done
  done
}
ALERT_IDS=(task-backlog-age dead-lettered-tasks dead-lettered-webhooks dead-lettered-emails failed-emails)

# The email function, deployed from a zip of its source in the release's folder of the
# releases bucket: the record holds exactly what runs, and --rollback deploys an earlier zip.
# Its image goes into the images' repository (not a gcf-artifacts one the teardown would leave).
deploy_email_function() {  # SOURCE-ZIP ENV-FILE
  run_retry gcloud functions deploy "$FUNCTION_NAME" --gen2 --project="$PROJECT_ID" --region="$REGION" \
    --runtime="$FUNCTION_RUNTIME" --source="$1" --entry-point="$FUNCTION_ENTRY_POINT" \
    --trigger-topic="$NOTIFICATIONS_TOPIC" --trigger-service-account="$GSA_EMAIL" --retry \
    --service-account="$GSA_EMAIL" --build-service-account="projects/$PROJECT_ID/serviceAccounts/$GSA_BUILD" \
    --docker-repository="projects/$PROJECT_ID/locations/$REGION/repositories/$REPOSITORY" \
    --memory=256Mi --max-instances=10 \
    --env-vars-file="$2" \
    --set-secrets="SENDGRID_API_KEY=$SENDGRID_SECRET:latest"
  # Only the trigger's identity may invoke the function (not every account of the project).
  run_retry gcloud functions add-invoker-policy-binding "$FUNCTION_NAME" --project="$PROJECT_ID" --region="$REGION" \
    --member="serviceAccount:$GSA_EMAIL" --format=none
  # The trigger's Pub/Sub subscription is created by Eventarc with no dead-letter topic: a mail
  # that keeps failing would be retried for the topic's whole retention. Give it the policy every
  # other subscription has (imageflow/topology.py): dead-letter after MAX_DELIVERY_ATTEMPTS into
  # the notifications DLQ topic (kept for inspection on its -hold subscription), exponential
  # backoff between retries, no expiry. Run after every deploy, since a new trigger gets a new
  # subscription.
  capture EMAIL_TRIGGER gcloud functions describe "$FUNCTION_NAME" --v2 --project="$PROJECT_ID" --region="$REGION" \
    --format='value(eventTrigger.trigger)'
  capture EMAIL_TRIGGER_SUBSCRIPTION gcloud eventarc triggers describe "$EMAIL_TRIGGER" --project="$PROJECT_ID" \
    --location="$REGION" --format='value(transport.pubsub.subscription)'
  if ((DRY_RUN)); then
    say "[[ -n \"\${EMAIL_TRIGGER_SUBSCRIPTION}\" ]] || { echo 'the email function has no Eventarc subscription' >&2; exit 1; }"
  elif [[ -z "$EMAIL_TRIGGER_SUBSCRIPTION" ]]; then
    echo "deploy.sh: the email function $FUNCTION_NAME has no Eventarc subscription" >&2; exit 1
  fi
  run_retry gcloud pubsub topics add-iam-policy-binding "$NOTIFICATIONS_DLQ_TOPIC" --project="$PROJECT_ID" \
    --member="serviceAccount:$PUBSUB_AGENT" --role=roles/pubsub.publisher --format=none
  run_retry gcloud pubsub subscriptions add-iam-policy-binding "$EMAIL_TRIGGER_SUBSCRIPTION" --project="$PROJECT_ID" \
    --member="serviceAccount:$PUBSUB_AGENT" --role=roles/pubsub.subscriber --format=none
  run gcloud pubsub subscriptions update "$EMAIL_TRIGGER_SUBSCRIPTION" --project="$PROJECT_ID" \
    --dead-letter-topic="$NOTIFICATIONS_DLQ_TOPIC" --max-delivery-attempts="$MAX_DELIVERY_ATTEMPTS" \
    --min-retry-delay="${RETRY_MIN_BACKOFF_SECONDS}s" --max-retry-delay="${RETRY_MAX_BACKOFF_SECONDS}s" \
    --expiration-period=never --format=none
}

# require_digest VAR IMAGE: stop unless VAR holds the sha256 digest the registry gave for IMAGE.
require_digest() {
  if ((DRY_RUN)); then
    say "[[ \"\${$1}\" =~ ^sha256:[0-9a-f]{64}\$ ]] || { echo 'no digest for $2 in Artifact Registry' >&2; exit 1; }"
  elif ! [[ "${!1}" =~ ^sha256:[0-9a-f]{64}$ ]]; then
    die "no digest for $2 in Artifact Registry (was it pushed? --skip-build needs images pushed with --tag)"
  fi
}

# The release's number: one more than the highest releases/<n>.json in the releases bucket.
# (one shell command, so the --dry-run plan runs it exactly as deploy.sh does)
next_release() {
  # shellcheck disable=SC2016  # $1 is the inner shell's argument
  capture RELEASE bash -c 'n="$(gcloud storage ls "gs://$1/releases/*.json" 2>/dev/null | sed -nE "s|.*/releases/([0-9]+)\.json\$|\1|p" | sort -n | tail -n 1)"; echo $((${n:-0} + 1))' next-release "$RELEASES_BUCKET"
}

# Zip the function's files (the folder's top level, where Cloud Functions looks for main.py).
release_function_source() {
  local files=()
  mapfile -t files < <(find "$FUNCTION_SOURCE" -maxdepth 1 -type f ! -name '*.pyc' | LC_ALL=C sort)
  run mkdir -p "$WORK_DIR/release"
  run rm -f "$WORK_DIR/release/email-function.zip"
  run "$PYTHON" -m zipfile -c "$WORK_DIR/release/email-function.zip" "${files[@]}"
  run gcloud storage cp "$WORK_DIR/release/email-function.zip" "gs://$RELEASES_BUCKET/releases/$RELEASE/email-function.zip"
}

# The rest of the release: what was applied (rendered, images by digest), the function's
# environment, the record itself (written last: a releases/<n>.json names a whole release),
# and releases/current, the release --rollback steps back from.
record_release() {
  run kubectl kustomize "$MANIFESTS/$OVERLAY" --output="$WORK_DIR/release/manifests.yaml"
  run gcloud storage cp "$WORK_DIR/release/manifests.yaml" "gs://$RELEASES_BUCKET/releases/$RELEASE/manifests.yaml"
  run gcloud storage cp "$WORK_DIR/function-env.yaml" "gs://$RELEASES_BUCKET/releases/$RELEASE/function-env.yaml"
  write_file "$WORK_DIR/release/release.json" "{
  \"release\": $RELEASE,
  \"tag\": \"$IMAGE_TAG\",
  \"overlay\": \"$OVERLAY\",
  \"public_base_url\": \"$PUBLIC_BASE_URL\",
  \"images\": {
    \"image-handler\": \"${IMAGE_REF[image-handler]}\",
    \"interaction-manager\": \"${IMAGE_REF[interaction-manager]}\",
    \"image-processor\": \"${IMAGE_REF[image-processor]}\",
    \"frontend\": \"${IMAGE_REF[frontend]}\"
  },
  \"manifests\": \"gs://$RELEASES_BUCKET/releases/$RELEASE/manifests.yaml\",
  \"function_source\": \"gs://$RELEASES_BUCKET/releases/$RELEASE/email-function.zip\",
  \"function_env\": \"gs://$RELEASES_BUCKET/releases/$RELEASE/function-env.yaml\"
}"
  run gcloud storage cp "$WORK_DIR/release/release.json" "gs://$RELEASES_BUCKET/releases/$RELEASE.json"
  write_file "$WORK_DIR/release/current" "$RELEASE"
  run gcloud storage cp "$WORK_DIR/release/current" "gs://$RELEASES_BUCKET/releases/current"
}

# ---------------------------------------------------------------- the plan ---------------
cd "$ROOT"
if ((DRY_RUN)); then
  say "#!/usr/bin/env bash"
  say "# ImageFlow deploy plan for project $PROJECT_ID (scripts/deploy.sh --dry-run); nothing was run."
  if ((PLACEHOLDER_PROJECT)); then say "# No --project given: $PROJECT_ID stands for your project id."; fi
  say "set -euo pipefail"
  say "$(declare -f ok_if_exists)"
  say "$(declare -f alert_policy_exists)"
  say "$(declare -f retry_propagation)"
  if ! ((ALLOW_OPEN_API || TEARDOWN || ROLLBACK)); then
    say "[[ -n \"\${API_KEYS:-}\" ]] || { echo 'API_KEYS is not set: set it (comma-separated keys) or plan with --allow-open-api' >&2; exit 2; }"
  fi
  if ! ((TEARDOWN || ROLLBACK)); then
    say "[[ -z \"\${API_KEYS:-}\" || -n \"\${URL_SIGNING_SECRET:-}\" ]] || { echo 'URL_SIGNING_SECRET is not set: with API_KEYS the services need it; make one once and keep it' >&2; exit 2; }"
  fi
  if ((PLACEHOLDER_EMAIL_FROM)); then say "# No --email-from given: $EMAIL_FROM stands for your SendGrid verified sender."; fi
  say "cd $(quote "$ROOT")"
else
  for tool in gcloud kubectl helm git; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (docs/deploy.md, Prerequisites)"
  done
  "$PYTHON" -c 'import google.cloud.pubsub_v1' 2>/dev/null \
    || die "$PYTHON lacks the project's dependencies (./scripts.sh deploy uses .venv; or set PYTHON)"
fi

if ((TEARDOWN)); then
  # Back to nothing, in the order that leaks nothing: the Ingress while its controller still
  # runs (deleting the cluster first leaves the forwarding rules, backend services, NEGs and
  # certificate behind, billed), then the cluster, then what nothing uses any more. Every
  # step deletes only what exists, so a teardown that stopped part-way is run again.
  step "Teardown 1. The load balancer (delete the Ingress, wait for its controller), then the workloads"
  cluster_check=(gcloud container clusters describe "$CLUSTER" --region="$REGION" --project="$PROJECT_ID")
  if ((DRY_RUN)); then say "if $(quote_all "${cluster_check[@]}") >/dev/null 2>&1; then"; fi
  if ((DRY_RUN)) || "${cluster_check[@]}" >/dev/null 2>&1; then
    run gcloud container clusters get-credentials "$CLUSTER" --region="$REGION" --project="$PROJECT_ID"
    run kubectl --namespace="$NAMESPACE" delete ingress imageflow --ignore-not-found --wait=true --timeout=15m
    run kubectl delete namespace "$NAMESPACE" --ignore-not-found --wait=true --timeout=15m
  fi
  if ((DRY_RUN)); then say "fi"; fi
  step "Teardown 2. The cluster (KEDA with it), the email function (its Eventarc trigger and subscription with it), the address"
  remove "${cluster_check[@]}" -- gcloud container clusters delete "$CLUSTER" --region="$REGION" --project="$PROJECT_ID" --quiet
  remove gcloud functions describe "$FUNCTION_NAME" --region="$REGION" --project="$PROJECT_ID" \
    -- gcloud functions delete "$FUNCTION_NAME" --region="$REGION" --project="$PROJECT_ID" --quiet
  remove gcloud compute addresses describe "$STATIC_IP_NAME" --global --project="$PROJECT_ID" \
    -- gcloud compute addresses delete "$STATIC_IP_NAME" --global --project="$PROJECT_ID" --quiet
  step "Teardown 3. Alert policies and the log-based metric"
  if ((DRY_RUN)); then say "$(declare -f delete_alert_policies)"; say "delete_alert_policies $(quote_all "$PROJECT_ID" "${ALERT_IDS[@]}")"
  else run delete_alert_policies "$PROJECT_ID" "${ALERT_IDS[@]}"; fi
  remove gcloud logging metrics describe imageflow-email-failures --project="$PROJECT_ID" \
    -- gcloud logging metrics delete imageflow-email-failures --project="$PROJECT_ID" --quiet
  if ((KEEP_DATA)); then
    step "Teardown 4. --keep-data: the bucket $GCS_BUCKET and Firestore stay; only the bucket's upload notifications go"
    remove gcloud storage buckets describe "gs://$GCS_BUCKET" --project="$PROJECT_ID" \
      -- gcloud storage buckets notifications delete "gs://$GCS_BUCKET" --project="$PROJECT_ID"
  else
    step "Teardown 4. The data: the bucket $GCS_BUCKET (every job's images) and the Firestore database"
    remove gcloud storage buckets describe "gs://$GCS_BUCKET" --project="$PROJECT_ID" \
      -- gcloud storage rm --recursive "gs://$GCS_BUCKET" --project="$PROJECT_ID"
    remove gcloud firestore databases describe --database='(default)' --project="$PROJECT_ID" \
      -- gcloud firestore databases delete --database='(default)' --project="$PROJECT_ID" --quiet
  fi
  step "Teardown 4b. The releases bucket (the deploys' records and staged build sources)"
  remove gcloud storage buckets describe "gs://$RELEASES_BUCKET" --project="$PROJECT_ID" \
    -- gcloud storage rm --recursive "gs://$RELEASES_BUCKET" --project="$PROJECT_ID"
  step "Teardown 5. Pub/Sub subscriptions, then topics (imageflow/topology.py's names)"
  while read -r kind name; do
    [[ "$kind" == subscription || "$kind" == topic ]] || die "unexpected topology output: $kind $name"
    remove gcloud pubsub "${kind}s" describe "$name" --project="$PROJECT_ID" \
      -- gcloud pubsub "${kind}s" delete "$name" --project="$PROJECT_ID"
  done < <("${topology_env[@]}" "$PYTHON" -m imageflow.setup names --no-email-subscription)
  step "Teardown 6. The SendGrid secret and the image repository (every image with it)"
  remove gcloud secrets describe "$SENDGRID_SECRET" --project="$PROJECT_ID" \
    -- gcloud secrets delete "$SENDGRID_SECRET" --project="$PROJECT_ID" --quiet
  remove gcloud artifacts repositories describe "$REPOSITORY" --location="$REGION" --project="$PROJECT_ID" \
    -- gcloud artifacts repositories delete "$REPOSITORY" --location="$REGION" --project="$PROJECT_ID" --quiet
  step "Teardown 7. The project roles, then the service accounts (their other bindings go with them)"
  for grant in "${PROJECT_ROLES[@]}"; do
    read -r gsa role <<<"$grant"
    unbind_project_role "serviceAccount:$gsa" "$role"
  done
  for account in "${SERVICE_ACCOUNTS[@]}"; do
    remove gcloud iam service-accounts describe "${account%%|*}@$GSA_DOMAIN" --project="$PROJECT_ID" \
      -- gcloud iam service-accounts delete "${account%%|*}@$GSA_DOMAIN" --project="$PROJECT_ID" --quiet
  done
  step "Done"
  done_message="ImageFlow removed from $PROJECT_ID (the APIs stay enabled"
  if ((KEEP_DATA)); then done_message+="; kept: gs://$GCS_BUCKET and the Firestore database"; fi
  done_message+=")"
  if ((DRY_RUN)); then say "echo $(quote "$done_message")"; else log "$done_message"; fi
  exit 0
fi

if ((ROLLBACK)); then
  # Back to the release before the current one, as a whole: the manifests it applied (its
  # images by digest, its configuration) and its email function (source zip and environment),
  # all read back from the releases bucket, so any operator machine can roll back. The
  # project's resources (topics, IAM, bucket, Firestore) stay as the newest deploy left them.
  step "Rollback 1. The current release and the one before it (gs://$RELEASES_BUCKET/releases)"
  capture CURRENT_RELEASE gcloud storage cat "gs://$RELEASES_BUCKET/releases/current"
  if ((DRY_RUN)); then
    # shellcheck disable=SC2016  # the plan computes it when it runs
    say 'ROLLBACK_RELEASE="$((CURRENT_RELEASE - 1))"'
    say "((ROLLBACK_RELEASE >= 1)) || { echo \"release \${CURRENT_RELEASE} is the first: there is none to roll back to\" >&2; exit 1; }"
    # shellcheck disable=SC2016  # a literal ${ROLLBACK_RELEASE}: the plan assigns it when it runs
    ROLLBACK_RELEASE='${ROLLBACK_RELEASE}'
  else
    [[ "$CURRENT_RELEASE" =~ ^[0-9]+$ ]] || die "no release recorded in gs://$RELEASES_BUCKET/releases/current: nothing to roll back"
    ROLLBACK_RELEASE=$((CURRENT_RELEASE - 1))
    ((ROLLBACK_RELEASE >= 1)) || die "release $CURRENT_RELEASE is the first: there is none to roll back to"
  fi
  RELEASE_URL="gs://$RELEASES_BUCKET/releases/$ROLLBACK_RELEASE"
  write_file .deploy/.gitignore "*"
  run rm -rf "$WORK_DIR/rollback"
  run mkdir -p "$WORK_DIR/rollback"
  run gcloud storage cp "$RELEASE_URL.json" "$WORK_DIR/rollback/release.json"
  run gcloud storage cp "$RELEASE_URL/manifests.yaml" "$WORK_DIR/rollback/manifests.yaml"
  run gcloud storage cp "$RELEASE_URL/function-env.yaml" "$WORK_DIR/rollback/function-env.yaml"
  step "Rollback 2. Its manifests: images by digest, configuration"
  run gcloud container clusters get-credentials "$CLUSTER" --region="$REGION" --project="$PROJECT_ID"
  run kubectl apply -f "$WORK_DIR/rollback/manifests.yaml"
  for deployment in image-handler interaction-manager frontend; do
    run kubectl --namespace="$NAMESPACE" rollout status "deployment/$deployment" --timeout=10m
  done
  step "Rollback 3. Its email function: source and environment"
  capture PROJECT_NUMBER gcloud projects describe "$PROJECT_ID" --format='value(projectNumber)'
  PUBSUB_AGENT="service-$PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com"
  deploy_email_function "$RELEASE_URL/email-function.zip" "$WORK_DIR/rollback/function-env.yaml"
  step "Rollback 4. It is the current release (a second --rollback goes one further back)"
  write_file "$WORK_DIR/rollback/current" "$ROLLBACK_RELEASE"
  run gcloud storage cp "$WORK_DIR/rollback/current" "gs://$RELEASES_BUCKET/releases/current"
  done_message="ImageFlow rolled back to release $ROLLBACK_RELEASE (gs://$RELEASES_BUCKET/releases/$ROLLBACK_RELEASE.json)"
  if ((DRY_RUN)); then say "echo $(quote "$done_message")"; else log "$done_message"; fi
  exit 0
fi

step "1. Enable the Google APIs"
run gcloud services enable \
  compute.googleapis.com container.googleapis.com artifactregistry.googleapis.com \
  cloudbuild.googleapis.com pubsub.googleapis.com firestore.googleapis.com \
  storage.googleapis.com secretmanager.googleapis.com iamcredentials.googleapis.com \
  monitoring.googleapis.com logging.googleapis.com cloudfunctions.googleapis.com \
  run.googleapis.com eventarc.googleapis.com telemetry.googleapis.com cloudtrace.googleapis.com \
  --project="$PROJECT_ID"
capture PROJECT_NUMBER gcloud projects describe "$PROJECT_ID" --format='value(projectNumber)'
PUBSUB_AGENT="service-$PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com"
# On a fresh project Pub/Sub's service agent (it forwards dead letters) exists only once
# asked for; the IAM bindings of step 8 would fail on a member that does not exist.
run gcloud beta services identity create --service=pubsub.googleapis.com --project="$PROJECT_ID" --format=none
# Cloud Storage's service agent (it publishes the bucket's upload notifications, step 8) is
# created lazily too: this command creates it if absent and prints it (the same on a re-run).
run gcloud storage service-agent --project="$PROJECT_ID" --format=none

step "2. Google service accounts and their project roles"
for account in "${SERVICE_ACCOUNTS[@]}"; do ensure_service_account "${account%%|*}" "${account#*|}"; done
unbind_project_role "serviceAccount:$GSA_PROCESSOR" roles/datastore.viewer  # granted by deploys before issue 14
for grant in "${PROJECT_ROLES[@]}"; do
  read -r gsa role <<<"$grant"
  bind_project_role "serviceAccount:$gsa" "$role"
done
# Signed download URLs under Workload Identity are signed by IAM (signBlob) as itself.
run_retry gcloud iam service-accounts add-iam-policy-binding "$GSA_HANDLER" --project="$PROJECT_ID" \
  --member="serviceAccount:$GSA_HANDLER" --role=roles/iam.serviceAccountTokenCreator --format=none

step "3. Artifact Registry repository for the images"
ensure gcloud artifacts repositories describe "$REPOSITORY" --location="$REGION" --project="$PROJECT_ID" \
  -- gcloud artifacts repositories create "$REPOSITORY" --repository-format=docker \
  --location="$REGION" --project="$PROJECT_ID" --description="ImageFlow images"
run_retry gcloud artifacts repositories add-iam-policy-binding "$REPOSITORY" --location="$REGION" \
  --project="$PROJECT_ID" --member="serviceAccount:$GSA_NODES" --role=roles/artifactregistry.reader --format=none

step "4. GKE cluster ($CLUSTER_MODE) with Workload Identity"
if [[ "$CLUSTER_MODE" == autopilot ]]; then
  # Autopilot: Workload Identity, Dataplane V2 (NetworkPolicy enforcement) and Managed
  # Prometheus (which reads k8s/base/pod-monitoring.yaml) are built in.
  ensure gcloud container clusters describe "$CLUSTER" --region="$REGION" --project="$PROJECT_ID" \
    -- gcloud container clusters create-auto "$CLUSTER" --region="$REGION" --project="$PROJECT_ID" \
    --release-channel=regular --service-account="$GSA_NODES"
else
  ensure gcloud container clusters describe "$CLUSTER" --region="$REGION" --project="$PROJECT_ID" \
    -- gcloud container clusters create "$CLUSTER" --region="$REGION" --project="$PROJECT_ID" \
    --release-channel=regular --workload-pool="$WI_POOL" --enable-dataplane-v2 --enable-managed-prometheus \
    --machine-type=e2-standard-2 --num-nodes=1 --enable-autoscaling --min-nodes=1 --max-nodes=4 \
    --service-account="$GSA_NODES"
fi
run gcloud container clusters get-credentials "$CLUSTER" --region="$REGION" --project="$PROJECT_ID"

step "5. Workload Identity: each Kubernetes service account acts as its Google one"
for pair in "image-handler $GSA_HANDLER" "interaction-manager $GSA_MANAGER" "image-processor $GSA_PROCESSOR"; do
  read -r ksa gsa <<<"$pair"
  run_retry gcloud iam service-accounts add-iam-policy-binding "$gsa" --project="$PROJECT_ID" \
    --role=roles/iam.workloadIdentityUser --member="serviceAccount:${WI_POOL}[$NAMESPACE/$ksa]" --format=none
done
run_retry gcloud iam service-accounts add-iam-policy-binding "$GSA_KEDA" --project="$PROJECT_ID" \
  --role=roles/iam.workloadIdentityUser --member="serviceAccount:${WI_POOL}[keda/keda-operator]" --format=none

step "6. Cloud Storage bucket: uniform access, no public access, delete after $JOB_RETENTION_DAYS days"
ensure gcloud storage buckets describe "gs://$GCS_BUCKET" --project="$PROJECT_ID" \
  -- gcloud storage buckets create "gs://$GCS_BUCKET" --project="$PROJECT_ID" --location="$REGION" \
  --uniform-bucket-level-access --public-access-prevention --default-storage-class=STANDARD
write_file .deploy/.gitignore "*"
write_file "$WORK_DIR/lifecycle.json" "{
  \"rule\": [
    {\"action\": {\"type\": \"Delete\"}, \"condition\": {\"age\": $JOB_RETENTION_DAYS}},
    {\"action\": {\"type\": \"AbortIncompleteMultipartUpload\"}, \"condition\": {\"age\": 1}}
  ]
}"
# Deleted images are gone: no soft-delete copies kept (and billed) for 7 more days.
run gcloud storage buckets update "gs://$GCS_BUCKET" --project="$PROJECT_ID" \
  --lifecycle-file="$WORK_DIR/lifecycle.json" --clear-soft-delete
# The releases bucket: each deploy's record (and Cloud Build's staged source), read back by
# --rollback from any machine; no lifecycle rule (a few MB per release).
ensure gcloud storage buckets describe "gs://$RELEASES_BUCKET" --project="$PROJECT_ID" \
  -- gcloud storage buckets create "gs://$RELEASES_BUCKET" --project="$PROJECT_ID" --location="$REGION" \
  --uniform-bucket-level-access --public-access-prevention --default-storage-class=STANDARD
# The builds (images, the email function) run as imageflow-build and read their source there.
run_retry gcloud storage buckets add-iam-policy-binding "gs://$RELEASES_BUCKET" --project="$PROJECT_ID" \
  --member="serviceAccount:$GSA_BUILD" --role=roles/storage.objectViewer --format=none
bind_bucket_role() {
  run_retry gcloud storage buckets add-iam-policy-binding "gs://$GCS_BUCKET" --project="$PROJECT_ID" \
    --member="serviceAccount:$1" --role="$2" --format=none
}
# What each service's code does with the bucket (tests/deploy/test_deploy_script.py derives the
# same from the code): legacyBucketReader for the bucket metadata its /readyz reads;
# objectUser to write (and overwrite) objects: the handler stores uploads, the processor
# outputs, the interaction manager the inputs it imports from URLs (services/interaction_manager/url_import.py).
BUCKET_ROLES=(
  "$GSA_HANDLER roles/storage.legacyBucketReader"
  "$GSA_MANAGER roles/storage.legacyBucketReader"
  "$GSA_PROCESSOR roles/storage.legacyBucketReader"
  "$GSA_HANDLER roles/storage.objectUser"
  "$GSA_MANAGER roles/storage.objectUser"
  "$GSA_PROCESSOR roles/storage.objectUser"
)
for grant in "${BUCKET_ROLES[@]}"; do
  read -r gsa role <<<"$grant"
  bind_bucket_role "$gsa" "$role"
done

step "7. Firestore (native mode) and the indexes of the job queries"
ensure gcloud firestore databases describe --database='(default)' --project="$PROJECT_ID" \
  -- gcloud firestore databases create --database='(default)' --location="$FIRESTORE_LOCATION" \
  --type=firestore-native --project="$PROJECT_ID"
# JobStore.list_jobs: equality on owner and/or status (or none), in (created_at, job_id) order, newest first.
for fields in "" "status" "owner" "owner status"; do
  index=(gcloud firestore indexes composite create --project="$PROJECT_ID" --database='(default)'
         --collection-group=jobs --query-scope=COLLECTION)
  for field in $fields; do index+=(--field-config="field-path=$field,order=ascending"); done
  index+=(--field-config="field-path=created_at,order=descending"
          --field-config="field-path=job_id,order=descending" --async)
  run_ok_if_exists "${index[@]}"
done
# Retention: Firestore deletes job and image documents once their expires_at has passed
# (written at creation from JOB_RETENTION_DAYS, the value the bucket's lifecycle rule uses).
for group in jobs images; do
  run gcloud firestore fields ttls update expires_at --collection-group="$group" --enable-ttl \
    --database='(default)' --project="$PROJECT_ID" --async --quiet
done

# An index on a monotonically increasing field caps its collection group's writes near 500/s;
# on images, the TTL field expires_at and updated_at are never queried (imageflow/jobstore/
# firestore.py), so they are exempt from single-field indexing (TTL works without it). seq stays
# indexed: page_images orders by it.
for field in expires_at updated_at; do
  run gcloud firestore indexes fields update "$field" --collection-group=images --disable-indexes \
    --database='(default)' --project="$PROJECT_ID" --async --quiet
done

# JobStore.page_images with a status filter: equality on status, in upload order (seq).
run_ok_if_exists gcloud firestore indexes composite create --project="$PROJECT_ID" --database='(default)' \
  --collection-group=images --query-scope=COLLECTION --field-config="field-path=status,order=ascending" \
  --field-config="field-path=seq,order=ascending" --async

# JobStore.iter_repairs: job.completed claimed but never published (the interaction manager's sweep).
run_ok_if_exists gcloud firestore indexes composite create --project="$PROJECT_ID" --database='(default)' \
  --collection-group=jobs --query-scope=COLLECTION --field-config="field-path=completion_message_id,order=ascending" \
  --field-config="field-path=notified_at,order=ascending" --async

step "8. Pub/Sub topics and subscriptions (imageflow/topology.py), dead-lettering of failed tasks"
# The setup command creates them, or brings existing ones in line, exactly as the code wants
# them: ack deadline, dead-letter policy, retry backoff, no expiry. The email function's
# subscription is left to its Eventarc trigger, and given the same policy in step 13 (its
# dead-letter topic is created here, with the others). It runs as you
# (gcloud auth application-default login), billed to this project: the application-default
# credentials' own quota project may be another one, where Pub/Sub is not even enabled.
run "${topology_env[@]}" "$PYTHON" -m imageflow.setup ensure --no-email-subscription
# Direct uploads (issue 12): the bucket announces each finished object on the uploads topic
# (the manager's subscription of it was created by the setup command just above). A second
# notification would send each event twice, so it is created only when none names the topic.
GCS_AGENT="service-$PROJECT_NUMBER@gs-project-accounts.iam.gserviceaccount.com"
run_retry gcloud pubsub topics add-iam-policy-binding "$UPLOADS_TOPIC" --project="$PROJECT_ID" \
  --member="serviceAccount:$GCS_AGENT" --role=roles/pubsub.publisher --format=none
# (the check is one shell command, so the --dry-run plan runs it exactly as deploy.sh does)
# shellcheck disable=SC2016  # $1..$3 are the inner shell's arguments
ensure bash -c 'gcloud storage buckets notifications list "gs://$1" --project="$2" --format="value(topic)" | grep -q "/topics/$3\$"' notification-check "$GCS_BUCKET" "$PROJECT_ID" "$UPLOADS_TOPIC" \
  -- gcloud storage buckets notifications create "gs://$GCS_BUCKET" --project="$PROJECT_ID" \
  --topic="$UPLOADS_TOPIC" --event-types=OBJECT_FINALIZE --payload-format=json
bind_topic_role() { run_retry gcloud pubsub topics add-iam-policy-binding "$1" --project="$PROJECT_ID" \
  --member="serviceAccount:$2" --role="$3" --format=none; }
bind_subscription_role() { run_retry gcloud pubsub subscriptions add-iam-policy-binding "$1" \
  --project="$PROJECT_ID" --member="serviceAccount:$2" --role="$3" --format=none; }
# The topology table's rows (imageflow/topology.py): dead-lettering, where Pub/Sub's own service
# agent forwards to the DLQ topic and acks the source; and each service account publishes, reads
# and views (its /readyz: MessageBus.check) exactly the topics and subscriptions its code does.
declare -A GSA_OF=([image-handler]="$GSA_HANDLER" [interaction-manager]="$GSA_MANAGER" [image-processor]="$GSA_PROCESSOR")
for row in "${TOPOLOGY_ROWS[@]}"; do
  read -r kind first second <<<"$row"
  if [[ "$kind" == dead-letter ]]; then  # first: the subscription, second: its dead-letter topic
    bind_topic_role "$second" "$PUBSUB_AGENT" roles/pubsub.publisher
    bind_subscription_role "$first" "$PUBSUB_AGENT" roles/pubsub.subscriber
    continue
  fi
  [[ -n "${GSA_OF[$first]:-}" ]] || die "the topology names a service deploy.sh has no account for: $first"
  case "$kind" in
    publish) bind_topic_role "$second" "${GSA_OF[$first]}" roles/pubsub.publisher ;;
    view) bind_topic_role "$second" "${GSA_OF[$first]}" roles/pubsub.viewer ;;
    subscribe) bind_subscription_role "$second" "${GSA_OF[$first]}" roles/pubsub.subscriber ;;
  esac
done

step "9. The SendGrid key in Secret Manager, readable by the email function only"
ensure gcloud secrets describe "$SENDGRID_SECRET" --project="$PROJECT_ID" \
  -- gcloud secrets create "$SENDGRID_SECRET" --project="$PROJECT_ID" --replication-policy=automatic
if ((DRY_RUN)); then
  # The plan reads the key from the environment when it runs; it never contains it.
  say "if [[ -n \"\${SENDGRID_API_KEY:-}\" ]]; then printf '%s' \"\$SENDGRID_API_KEY\" | $(quote_all gcloud secrets versions add "$SENDGRID_SECRET" --project="$PROJECT_ID" --data-file=-); fi"
elif [[ -n "${SENDGRID_API_KEY:-}" ]]; then
  current="$(gcloud secrets versions access latest --secret="$SENDGRID_SECRET" --project="$PROJECT_ID" 2>/dev/null || true)"
  if [[ "$current" != "$SENDGRID_API_KEY" ]]; then
    printf '+ %s\n' "gcloud secrets versions add $SENDGRID_SECRET --data-file=- (SENDGRID_API_KEY)" >&2
    printf '%s' "$SENDGRID_API_KEY" | gcloud secrets versions add "$SENDGRID_SECRET" --project="$PROJECT_ID" --data-file=-
  fi
elif ! gcloud secrets versions describe latest --secret="$SENDGRID_SECRET" --project="$PROJECT_ID" >/dev/null 2>&1; then
  die "the secret $SENDGRID_SECRET has no version yet: set SENDGRID_API_KEY for the first deploy"
fi
run_retry gcloud secrets add-iam-policy-binding "$SENDGRID_SECRET" --project="$PROJECT_ID" \
  --member="serviceAccount:$GSA_EMAIL" --role=roles/secretmanager.secretAccessor --format=none

step "10. Static address of the load balancer"
ensure gcloud compute addresses describe "$STATIC_IP_NAME" --global --project="$PROJECT_ID" \
  -- gcloud compute addresses create "$STATIC_IP_NAME" --global --project="$PROJECT_ID"
capture INGRESS_IP gcloud compute addresses describe "$STATIC_IP_NAME" --global --project="$PROJECT_ID" --format='value(address)'
# Without --domain: a name that resolves to the address (sslip.io answers a.b.c.d for
# a-b-c-d.sslip.io), so the managed certificate can be issued with no DNS of one's own.
if ((DRY_RUN)); then
  say "INGRESS_HOST=\"\${INGRESS_IP//./-}.sslip.io\""
  # shellcheck disable=SC2016  # a literal ${INGRESS_HOST}: the plan assigns it when it runs
  INGRESS_HOST='${INGRESS_HOST}'
else
  INGRESS_HOST="${INGRESS_IP//./-}.sslip.io"
fi
SSLIP_DOMAIN=0
if [[ -z "$DOMAIN" ]] && ! ((INSECURE_HTTP)); then DOMAIN="$INGRESS_HOST" SSLIP_DOMAIN=1; fi
if [[ -n "$DOMAIN" ]]; then
  PUBLIC_BASE_URL="${PUBLIC_BASE_URL:-https://$DOMAIN}"
else
  PUBLIC_BASE_URL="${PUBLIC_BASE_URL:-http://$INGRESS_IP}"
fi
PUBLIC_BASE_URL="${PUBLIC_BASE_URL%/}"
# The page sends large files straight to their Cloud Storage upload sessions, in resumable chunks
# (docs/api.md "Direct uploads"): the bucket lets the page's origin PUT with the chunk headers and
# read the session's Range answer; no other origin, no other method.
write_file "$WORK_DIR/cors.json" "[{\"origin\": [\"$PUBLIC_BASE_URL\"], \"method\": [\"PUT\"],
  \"responseHeader\": [\"Content-Type\", \"Content-Range\", \"Range\"], \"maxAgeSeconds\": 3600}]"
run gcloud storage buckets update "gs://$GCS_BUCKET" --project="$PROJECT_ID" --cors-file="$WORK_DIR/cors.json"

step "11. Build and push the images (Cloud Build, tag $IMAGE_TAG), then read their digests"
declare -A IMAGE_REF=()
build_steps="" build_images=""
for spec in "${IMAGES[@]}"; do
  read -r name dockerfile context port <<<"$spec"
  build_args=""
  [[ "$port" == - ]] || build_args="--build-arg, SERVICE=$name, --build-arg, PORT=$port, "
  build_steps+="  - id: $name
    name: gcr.io/cloud-builders/docker
    args: [build, -f, $dockerfile, ${build_args}-t, $REGISTRY/$name:$IMAGE_TAG, $context]
    waitFor: ['-']
"
  build_images+="  - $REGISTRY/$name:$IMAGE_TAG
"
done
if ((SKIP_BUILD)); then
  ((DRY_RUN)) && say "# --skip-build: using images already pushed with tag $IMAGE_TAG"
else
  write_file "$WORK_DIR/cloudbuild.yaml" "# Generated by scripts/deploy.sh: the four images, built in parallel.
steps:
${build_steps}images:
${build_images}options:
  logging: CLOUD_LOGGING_ONLY"
  # The source is staged in the releases bucket (not a <project>_cloudbuild bucket the
  # teardown would leave behind).
  run gcloud builds submit . --project="$PROJECT_ID" --region="$REGION" \
    --config="$WORK_DIR/cloudbuild.yaml" --gcs-source-staging-dir="gs://$RELEASES_BUCKET/build-source" \
    --service-account="projects/$PROJECT_ID/serviceAccounts/$GSA_BUILD"
fi
# Issue 27 M5: the manifests name each image by the digest the registry gave it, not by a tag
# a rebuild may move; the release record keeps them for --rollback.
for spec in "${IMAGES[@]}"; do
  read -r name _ <<<"$spec"
  var="$(tr 'a-z-' 'A-Z_' <<<"$name")_DIGEST"
  capture "$var" gcloud artifacts docker images describe "$REGISTRY/$name:$IMAGE_TAG" --project="$PROJECT_ID" \
    --format='value(image_summary.digest)'
  require_digest "$var" "$REGISTRY/$name:$IMAGE_TAG"
  IMAGE_REF[$name]="$REGISTRY/$name@${!var}"
done
next_release

step "12. KEDA $KEDA_VERSION (Helm), its operator acting as $GSA_KEDA"
run helm repo add kedacore https://kedacore.github.io/charts --force-update
run helm upgrade --install keda kedacore/keda --version="$KEDA_VERSION" \
  --namespace=keda --create-namespace \
  --set=podIdentity.gcp.enabled=true \
  --set=podIdentity.gcp.gcpIAMServiceAccount="$GSA_KEDA" \
  --wait --timeout=10m

step "13. Kubernetes manifests ($OVERLAY) and the email function"
# The overlays hold example values (they render from a clean checkout); this project's
# values go into a copy under $WORK_DIR, so the checkout stays clean (and the next image
# tag is not "-dirty").
MANIFESTS="$WORK_DIR/manifests"
run rm -rf "$MANIFESTS"
run mkdir -p "$MANIFESTS"
run cp -R k8s keda "$MANIFESTS/"
write_file "$MANIFESTS/k8s/overlays/gke/params.env" "IMAGE_HANDLER_IMAGE=${IMAGE_REF[image-handler]}
INTERACTION_MANAGER_IMAGE=${IMAGE_REF[interaction-manager]}
IMAGE_PROCESSOR_IMAGE=${IMAGE_REF[image-processor]}
FRONTEND_IMAGE=${IMAGE_REF[frontend]}
GSA_DOMAIN=$GSA_DOMAIN"
write_file "$MANIFESTS/k8s/overlays/gke/config.env" "GCP_PROJECT=$PROJECT_ID
GCS_BUCKET=$GCS_BUCKET
PUBLIC_BASE_URL=$PUBLIC_BASE_URL
JOB_RETENTION_DAYS=$JOB_RETENTION_DAYS
INPUT_RETENTION_HOURS=$INPUT_RETENTION_HOURS
ACK_DEADLINE_SECONDS=$ACK_DEADLINE_SECONDS
MAX_DELIVERY_ATTEMPTS=$MAX_DELIVERY_ATTEMPTS
JOBS_TOPIC=$JOBS_TOPIC
TASKS_TOPIC=$TASKS_TOPIC
RESULTS_TOPIC=$RESULTS_TOPIC
NOTIFICATIONS_TOPIC=$NOTIFICATIONS_TOPIC
TASKS_DLQ_TOPIC=$TASKS_DLQ_TOPIC
JOBS_SUBSCRIPTION=$JOBS_SUBSCRIPTION
TASKS_SUBSCRIPTION=$TASKS_SUBSCRIPTION
RESULTS_SUBSCRIPTION=$RESULTS_SUBSCRIPTION
TASKS_DLQ_SUBSCRIPTION=$TASKS_DLQ_SUBSCRIPTION
NOTIFICATIONS_SUBSCRIPTION=$NOTIFICATIONS_SUBSCRIPTION
WEBHOOKS_DLQ_TOPIC=$WEBHOOKS_DLQ_TOPIC
WEBHOOKS_SUBSCRIPTION=$WEBHOOKS_SUBSCRIPTION
WEBHOOKS_DLQ_SUBSCRIPTION=$WEBHOOKS_DLQ_SUBSCRIPTION"
if [[ -n "$DOMAIN" ]]; then
  write_file "$MANIFESTS/k8s/overlays/gke-https/params.env" "DOMAIN=$DOMAIN"
fi
ensure kubectl get namespace "$NAMESPACE" -- kubectl create namespace "$NAMESPACE"
# The API keys and link-signing key (k8s Secret imageflow-secrets, which the image-handler and
# interaction-manager pods require: the manager signs the zip link in job.completed, the
# handler verifies it), from the environment; empty keys only with --allow-open-api.
secret_cmd=(kubectl create secret generic imageflow-secrets --namespace="$NAMESPACE"
            --dry-run=client --output=yaml)
if ((DRY_RUN)); then
  say "$(quote_all "${secret_cmd[@]}") --from-literal=\"API_KEYS=\${API_KEYS:-}\" --from-literal=\"URL_SIGNING_SECRET=\${URL_SIGNING_SECRET:-}\" | kubectl apply -f -"
else
  printf '+ %s | kubectl apply -f -   (API_KEYS, URL_SIGNING_SECRET from the environment)\n' "$(quote_all "${secret_cmd[@]}")" >&2
  "${secret_cmd[@]}" --from-literal="API_KEYS=${API_KEYS:-}" --from-literal="URL_SIGNING_SECRET=${URL_SIGNING_SECRET:-}" \
    | kubectl apply -f -
fi
run kubectl apply -k "$MANIFESTS/$OVERLAY"
for deployment in image-handler interaction-manager frontend; do
  run kubectl --namespace="$NAMESPACE" rollout status "deployment/$deployment" --timeout=10m
done

yaml_str() { local v="${1//\\/\\\\}"; printf '"%s"' "${v//\"/\\\"}"; }  # a YAML double-quoted scalar
write_file "$WORK_DIR/function-env.yaml" "IMAGEFLOW_BACKEND: \"gcp\"
GCP_PROJECT: $(yaml_str "$PROJECT_ID")
PUBLIC_BASE_URL: $(yaml_str "$PUBLIC_BASE_URL")
EMAIL_FROM: $(yaml_str "$EMAIL_FROM")
OTEL_TRACES_EXPORTER: \"gcp_trace\""
release_function_source
deploy_email_function "gs://$RELEASES_BUCKET/releases/$RELEASE/email-function.zip" "$WORK_DIR/function-env.yaml"
record_release

step "14. Monitoring: alert policies on the task backlog's age, dead letters, failed emails"
# Managed Prometheus scrapes /metrics (k8s/base/pod-monitoring.yaml); these alert on what
# needs a person. Failed emails: the function's error logs, counted by a log-based metric.
# Its plain-text lines have no severity in Cloud Logging, so the filter also matches its
# error lines by their text (logging's default "ERROR:<logger>:" prefix) and the traceback
# of a send that raised for a retry.
ensure gcloud logging metrics describe imageflow-email-failures --project="$PROJECT_ID" \
  -- gcloud logging metrics create imageflow-email-failures --project="$PROJECT_ID" \
  --description="ImageFlow emails that were not sent (the email function logged an error)" \
  --log-filter="resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"$FUNCTION_NAME\" AND (severity>=ERROR OR textPayload:\"ERROR:email_notifier:\" OR textPayload:\"Traceback\")"
alert_policy() {  # id display-name metric-type resource-filter threshold duration-seconds aligner
  write_file "$WORK_DIR/alert-$1.json" "{
  \"displayName\": \"$2\",
  \"userLabels\": {\"imageflow_alert\": \"$1\"},
  \"combiner\": \"OR\",
  \"conditions\": [{
    \"displayName\": \"$2\",
    \"conditionThreshold\": {
      \"filter\": \"metric.type=\\\"$3\\\" AND $4\",
      \"aggregations\": [{\"alignmentPeriod\": \"60s\", \"perSeriesAligner\": \"$7\"}],
      \"comparison\": \"COMPARISON_GT\",
      \"thresholdValue\": $5,
      \"duration\": \"$6s\"
    }
  }]
}"
  ensure alert_policy_exists "$PROJECT_ID" "$1" \
    -- gcloud alpha monitoring policies create --project="$PROJECT_ID" --policy-from-file="$WORK_DIR/alert-$1.json"
}
sub_filter() { printf 'resource.type=\\"pubsub_subscription\\" AND resource.label.subscription_id=\\"%s\\"' "$1"; }
alert_policy task-backlog-age "ImageFlow: oldest task waiting over 15 minutes" \
  pubsub.googleapis.com/subscription/oldest_unacked_message_age "$(sub_filter "$TASKS_SUBSCRIPTION")" 900 300 ALIGN_MAX
alert_policy dead-lettered-tasks "ImageFlow: tasks dead-lettered" \
  pubsub.googleapis.com/subscription/num_undelivered_messages "$(sub_filter "$TASKS_DLQ_SUBSCRIPTION")" 0 60 ALIGN_MAX
alert_policy dead-lettered-webhooks "ImageFlow: webhook deliveries dead-lettered" \
  pubsub.googleapis.com/subscription/num_undelivered_messages "$(sub_filter "$WEBHOOKS_DLQ_SUBSCRIPTION")" 0 60 ALIGN_MAX
alert_policy dead-lettered-emails "ImageFlow: emails dead-lettered" \
  pubsub.googleapis.com/subscription/num_undelivered_messages "$(sub_filter "$NOTIFICATIONS_DLQ_SUBSCRIPTION")" 0 60 ALIGN_MAX
alert_policy failed-emails "ImageFlow: emails not sent" \
  logging.googleapis.com/user/imageflow-email-failures 'resource.type=\"cloud_run_revision\"' 0 60 ALIGN_SUM

step "Done"
done_message="ImageFlow: $PUBLIC_BASE_URL (the load balancer takes a few minutes to answer)"
if ((SSLIP_DOMAIN)); then
  done_message+="; its certificate becomes active 15-60 minutes after the first deploy (until then HTTPS fails)"
elif [[ -n "$DOMAIN" ]]; then
  done_message+="; point the DNS A record of $DOMAIN at $INGRESS_IP for its certificate"
fi
if ((DRY_RUN)); then say "echo $(quote "$done_message")"; else log "$done_message"; fi
