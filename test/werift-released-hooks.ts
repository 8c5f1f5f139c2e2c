// Module resolution hooks (node:module register) that send `import 'werift'` to another copy of
// werift: see werift-released.ts.
let entry = '';

export function initialize(data: string): void {
  entry = data;
}

export function resolve(
  specifier: string,
  context: unknown,
  next: (specifier: string, context: unknown) => unknown,
): unknown {
  return specifier === 'werift' ? { url: entry, shortCircuit: true } : next(specifier, context);
}
