# syntax=docker/dockerfile:1
# One image for every Tally process; docker-compose.yml chooses the process with `command`:
#   docker build -t tally .
#   docker run --rm -e DATABASE_URL=… -e NATS_URL=… tally node dist/services/account/src/main.js

ARG NODE_IMAGE=node:20.20-bookworm-slim

# Build: every dependency, the TypeScript compiled to dist/, then the dev dependencies dropped.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Fixes to dependencies (see the README), applied by npm install's postinstall step.
COPY patches patches
# npm install, not npm ci, for the reason given in .ci/run; every version is pinned and locked.
RUN npm install --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY gen gen
COPY platform platform
COPY services services
COPY gateway gateway
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

# Run: the compiled code, the production dependencies and each service's migrations, as an unprivileged user.
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
COPY --from=build /app/services/account/migrations services/account/migrations
COPY --from=build /app/services/transactions/migrations services/transactions/migrations
COPY --from=build /app/services/risk/migrations services/risk/migrations
# The node image's own unprivileged user (uid 1000); nothing in /app is writable by it.
USER node
# gateway; account, transactions, risk (gRPC); their Prometheus /metrics.
EXPOSE 8080 50051 50052 50053 9464 9465 9466 9467
CMD ["node", "dist/gateway/src/main.js"]
