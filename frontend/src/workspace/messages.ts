// The panel's two voices: a passing notice over the map and a standing error in the panel.
import { byId } from "../dom";

export class Messages {
  private readonly noticeEl = byId("panel-notice");
  private readonly errorEl = byId("panel-error");
  private timer: number | null = null;

  notice(text: string): void {
    if (!this.noticeEl) return;
    this.noticeEl.textContent = text;
    this.noticeEl.hidden = false;
    if (this.timer !== null) window.clearTimeout(this.timer);
    this.timer = window.setTimeout(() => this.noticeEl && (this.noticeEl.hidden = true), 4000);
  }

  error(text: string): void {
    if (!this.errorEl) return;
    this.errorEl.textContent = text;
    this.errorEl.hidden = false;
  }

  clearError(): void {
    if (!this.errorEl) return;
    this.errorEl.hidden = true;
    this.errorEl.textContent = "";
  }
}
