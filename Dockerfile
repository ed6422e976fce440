# syntax=docker/dockerfile:1
#
# idempotency-sidecar: the proxy, and with `webhook` its admission webhook, in one image.
#
#   docker build -t idempotency-sidecar .          (npm run docker:build)
#   docker run --read-only -e IDEMPOTENCY_UPSTREAM=http://api:3000 -p 8080:8080 idempotency-sidecar
#   docker run --read-only ... idempotency-sidecar webhook --tls-cert ... (see `webhook --help`)
#
# Stage 1 builds with the whole toolchain; the final stage is distroless: Node.js 24 (the LTS line
# package.json's engines names) and its libraries, no shell, no package manager, uid 65532. test/integration/container-image.test.ts checks this
# file's promises and runs the final stage's file set from a directory built the same way.

# --- build: compile TypeScript, then drop the dev dependencies -----------------------------------
FROM node:24-bookworm-slim AS build
WORKDIR /app

# Dependencies first, so this layer is reused until package.json or the lock file changes.
# --ignore-scripts: only dev dependencies have install scripts. package.json's allowScripts denies
# the native builds under testcontainers and jest, but the image's npm may predate allowScripts;
# and the one it allows, the `node` devDependency's (the Node binary a checkout's npm scripts run
# on), is not wanted here: this image's own Node 24 runs the build, since without that script
# node_modules/.bin has no node to come first on PATH.
COPY package.json package-lock.json .npmrc ./
RUN npm ci --ignore-scripts --no-audit --no-fund

COPY tsconfig.json tsconfig.build.json ./
COPY scripts/ ./scripts/
COPY src/ ./src/
COPY bin/ ./bin/
COPY config/ ./config/
RUN npm run build

# What is left in node_modules is exactly what runs: typescript, jest and testcontainers go.
RUN npm prune --omit=dev --ignore-scripts --no-audit --no-fund

# --- runtime -------------------------------------------------------------------------------------
# The :nonroot tag runs as uid/gid 65532; USER below says so again for scanners and for anyone who
# swaps the base. Everything is copied as root-owned and read-only to that user.
FROM gcr.io/distroless/nodejs24-debian12:nonroot
WORKDIR /app
ENV NODE_ENV=production

COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
COPY --from=build /app/config ./config

USER 65532:65532

# Read-only root filesystem: nothing is written at run time. Logs are JSON lines on stdout, the
# record store is Redis (or process memory), the webhook only reads its certificate, key and
# template from mounted files. `docker run --read-only`, or readOnlyRootFilesystem: true, needs no
# writable volume, not even /tmp.

# 8080: the proxy (IDEMPOTENCY_PORT); 9090: health, readiness, metrics (IDEMPOTENCY_ADMIN_PORT).
# The webhook listens on 8443 (IDEMPOTENCY_WEBHOOK_PORT).
EXPOSE 8080 9090

# Distroless has no curl: the program checks itself. It reads the admin port from
# IDEMPOTENCY_ADMIN_PORT or the YAML file (Docker does not pass the entrypoint's flags here) and
# gives up after 2 s. Kubernetes ignores HEALTHCHECK and uses the pod's probes instead; a
# `webhook` container run by Docker has no admin port, so run it with --no-healthcheck.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/nodejs/bin/node", "/app/bin/idempotency-sidecar.js", "healthcheck"]

# V8 sizes its young generation from the memory it sees (the host's, without a pod memory limit):
# on a 24 GiB machine that was over 100 MB of RSS under load for no measured gain. 16 MB semi-spaces
# took the benchmark's peak RSS from 337 to 238 MB with first-time throughput within noise
# (docs/performance.md, "What moved the figures"); 4 MB saved no more and cost 13-27 % of it.
# NODE_OPTIONS, so an operator can set other flags (or none) with the container's env.
ENV NODE_OPTIONS="--max-semi-space-size=16"

# Exec form: node is PID 1 and receives SIGTERM itself (no shell in between to swallow it). The
# program handles SIGTERM and SIGINT: the proxy stops accepting, lets requests in flight finish
# within IDEMPOTENCY_SHUTDOWN_GRACE (25s; keep it below terminationGracePeriodSeconds), releases
# its locks and exits 0. It starts no child processes, so PID 1 has no zombies to reap.
ENTRYPOINT ["/nodejs/bin/node", "/app/bin/idempotency-sidecar.js"]
