// An object seen through a few overrides of its methods: the result backend with signing (backends/signed.ts), a
// key-value bucket with its hot steps on Fennel's own requests (clients/nats/kv.ts). A Proxy rather than a copy, so
// that every method the overrides leave alone is the target's own, bound to it (class methods, getters, and methods
// added to the target's class later alike).

/** `target`, with each property named in `overrides` replaced by the override. */
export function overlay<T extends object>(target: T, overrides: Partial<T>): T {
  return new Proxy(target, {
    get(object, property, receiver) {
      const own = (overrides as Record<PropertyKey, unknown>)[property];
      if (own !== undefined) return own;
      const value: unknown = Reflect.get(object, property, receiver);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(object) : value;
    },
  });
}
