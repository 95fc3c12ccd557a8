# The wxacode worker image. Build: `docker build -t wxacode-pregen .` (docker-compose.yml builds it for you).
# Run any command: `docker run --rm wxacode-pregen --help`; the default is the worker with metrics on :9464.

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the package's own `prepare` would compile before the sources are here, and no runtime
# dependency needs an install script (msgpackr-extract is optional and ships prebuilt binaries).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY bin ./bin
USER node
EXPOSE 9464
ENTRYPOINT ["node", "bin/wxacode.js"]
CMD ["worker", "--metrics-port", "9464"]
