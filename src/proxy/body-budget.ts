/**
 * The bytes of guarded request bodies held in memory at once (IDEMPOTENCY_MAX_BODY_MEMORY). A
 * guarded body is read whole before the claim (it is part of the fingerprint) and kept until the
 * upstream has answered, so without a bound, many slow or concurrent clients each sending a body
 * near the size limit grow the process without end. A request that would pass the bound is
 * refused (503 with Retry-After) instead of being read.
 */
export class BodyBudget {
  private held = 0;

  constructor(readonly limit: number) {}

  /** A share of the budget for one request; released once, when the request is done with its body. */
  share(): BodyShare {
    let taken = 0;
    return {
      take: (bytes) => {
        if (this.held + bytes > this.limit) return false;
        this.held += bytes;
        taken += bytes;
        return true;
      },
      release: () => {
        this.held -= taken;
        taken = 0;
      },
    };
  }

  /** Bytes held now. */
  get inUse(): number {
    return this.held;
  }
}

export interface BodyShare {
  /** Takes `bytes` more; false, taking nothing, when they do not fit. */
  take(bytes: number): boolean;
  /** Gives back everything taken; idempotent. */
  release(): void;
}
