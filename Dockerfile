# The wxacode worker image. Build: `docker build -t wxacode-pregen .` (docker-compose.yml builds it for you).
# Run any command: `docker run --rm wxacode-pregen --help`; the default is the worker with metrics on :9464.

# Node 24 LTS (supported until April 2028), its latest patch release at each build; trixie because bookworm's
# regular Debian security support has ended.
FROM node:24-trixie-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the package's own `prepare` would compile before the sources are here, and no runtime
# dependency needs an install script (msgpackr-extract is optional and ships prebuilt binaries).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:24-trixie-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY bin ./bin
USER node
EXPOSE 9464
# Stack traces name the TypeScript source lines (dist/ ships its .js.map files), not the compiled JavaScript.
ENTRYPOINT ["node", "--enable-source-maps", "bin/wxacode.js"]
CMD ["worker", "--metrics-port", "9464"]
